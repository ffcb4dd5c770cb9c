import Foundation
import MeltyJSON
import Testing

@testable import ModelProvider

/// The SSE parser and the streamed-turn accumulator, with streams in the shapes OpenAI,
/// llama.cpp's server and Ollama send, fed whole, byte by byte and at every split point,
/// with CRLF and comments; truncated and garbage streams fail cleanly.
@Suite struct ProviderStreamTests {
    static let url = "http://127.0.0.1:8080/v1/chat/completions"

    /// OpenAI's stream of one tool call (recorded shape: `usage: null` on each chunk, the
    /// usage chunk with empty `choices` because of `stream_options.include_usage`).
    static let openAIToolCall = [
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"location"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\"Paris, France\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#,
        #"{"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1722000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":70,"completion_tokens":18,"total_tokens":88}}"#,
        "[DONE]",
    ]

    /// llama.cpp's server: text, usage and timings on the last chunk.
    static let llamaCppText = [
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1733000000,"id":"chatcmpl-L","model":"gpt-3.5-turbo","system_fingerprint":"b4273","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Bon"}}],"created":1733000000,"id":"chatcmpl-L","model":"gpt-3.5-turbo","system_fingerprint":"b4273","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"jour ☀️"}}],"created":1733000000,"id":"chatcmpl-L","model":"gpt-3.5-turbo","system_fingerprint":"b4273","object":"chat.completion.chunk"}"#,
        #"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1733000000,"id":"chatcmpl-L","model":"gpt-3.5-turbo","system_fingerprint":"b4273","object":"chat.completion.chunk","usage":{"completion_tokens":4,"prompt_tokens":11,"total_tokens":15},"timings":{"prompt_n":11,"predicted_n":4}}"#,
        "[DONE]",
    ]

    /// Ollama's `/v1`: each tool call whole in one delta, two calls, `finish_reason` stop.
    static let ollamaTwoCalls = [
        #"{"id":"chatcmpl-O","object":"chat.completion.chunk","created":1733000002,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_a1","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":null}]}"#,
        #"{"id":"chatcmpl-O","object":"chat.completion.chunk","created":1733000002,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_b2","index":1,"type":"function","function":{"name":"get_time","arguments":"{\"zone\":\"CET\"}"}}]},"finish_reason":null}]}"#,
        #"{"id":"chatcmpl-O","object":"chat.completion.chunk","created":1733000002,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#,
        #"{"id":"chatcmpl-O","object":"chat.completion.chunk","created":1733000002,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":90,"completion_tokens":30,"total_tokens":120}}"#,
        "[DONE]",
    ]

    static func body(_ events: [String], newline: String = "\n", comments: Bool = false) -> [UInt8] {
        var text = comments ? ": OPENROUTER PROCESSING" + newline + newline : ""
        for event in events {
            text += "data: " + event + newline + newline
            if comments { text += ":keep-alive" + newline }
        }
        return Array(text.utf8)
    }

    static func turn(_ bytes: [UInt8], pieces: Int? = nil) throws -> ChatTurn {
        var accumulator = ChatStreamAccumulator(url: url)
        if let pieces {
            var index = 0
            while index < bytes.count {
                let end = min(bytes.count, index + pieces)
                try accumulator.feed(bytes[index..<end])
                index = end
            }
        } else {
            try accumulator.feed(bytes)
        }
        return try accumulator.finish()
    }

    static func splitTurns(_ bytes: [UInt8]) throws -> [ChatTurn] {
        var turns: [ChatTurn] = []
        for split in 0...bytes.count {
            var accumulator = ChatStreamAccumulator(url: url)
            try accumulator.feed(bytes[..<split])
            try accumulator.feed(bytes[split...])
            turns.append(try accumulator.finish())
        }
        return turns
    }

    @Test func openAIToolCallStream() throws {
        let expected = ChatTurn(
            message: ChatMessage(
                role: "assistant", content: nil, toolCalls: [ToolCall(id: "call_DdmO9pD3xa9XTPNJ32zg2hcA", name: "get_weather", arguments: #"{"location":"Paris, France"}"#)]),
            finishReason: "tool_calls", promptTokens: 70, completionTokens: 18)
        for newline in ["\n", "\r\n", "\r"] {
            for comments in [false, true] {
                let bytes = Self.body(Self.openAIToolCall, newline: newline, comments: comments)
                #expect(try Self.turn(bytes) == expected)
                #expect(try Self.turn(bytes, pieces: 1) == expected)
                #expect(try Self.turn(bytes, pieces: 7) == expected)
            }
        }
        for turn in try Self.splitTurns(Self.body(Self.openAIToolCall, newline: "\r\n")) { #expect(turn == expected) }
    }

    @Test func llamaCppTextStream() throws {
        let expected = ChatTurn(message: ChatMessage(role: "assistant", content: "Bonjour ☀️"), finishReason: "stop", promptTokens: 11, completionTokens: 4)
        for turn in try Self.splitTurns(Self.body(Self.llamaCppText)) { #expect(turn == expected) }
    }

    @Test func ollamaWholeCallsStream() throws {
        let turn = try Self.turn(Self.body(Self.ollamaTwoCalls), pieces: 3)
        #expect(
            turn.message.toolCalls == [
                ToolCall(id: "call_a1", name: "get_weather", arguments: #"{"city":"Paris"}"#), ToolCall(id: "call_b2", name: "get_time", arguments: #"{"zone":"CET"}"#),
            ])
        #expect(turn.message.content == "")
        #expect(turn.finishReason == "stop" && turn.totalTokens == 120)
    }

    @Test func interleavedParallelCallsAssembleByIndex() throws {
        let events = [
            #"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"second","arguments":""}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"first","arguments":"{\"x\":"}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]
        let turn = try Self.turn(Self.body(events))
        #expect(turn.message.toolCalls == [ToolCall(id: "call_a", name: "first", arguments: #"{"x":1}"#), ToolCall(id: "call_b", name: "second", arguments: "{}")])
        #expect(turn.promptTokens == 0)
    }

    @Test func callsWithoutIndexOpenByNewID() throws {
        let events = [
            #"{"choices":[{"delta":{"tool_calls":[{"id":"g1","type":"function","function":{"name":"a","arguments":"{\"q\":"}}]}}]}"#,
            #"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"1}"}}]}}]}"#,
            #"{"choices":[{"delta":{"tool_calls":[{"id":"g2","type":"function","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            #"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#, "[DONE]",
        ]
        let turn = try Self.turn(Self.body(events))
        #expect(turn.message.toolCalls == [ToolCall(id: "g1", name: "a", arguments: #"{"q":1}"#), ToolCall(id: "g2", name: "b", arguments: "{}")])
    }

    @Test func bytesAfterDoneAreIgnored() throws {
        let bytes = Self.body(Self.llamaCppText) + Array("data: {not json\n\ngarbage".utf8)
        #expect(try Self.turn(bytes).message.content == "Bonjour ☀️")
    }

    @Test func lastEventWithoutBlankLineCounts() throws {
        let text = "data: " + Self.llamaCppText[1] + "\n\ndata: " + Self.llamaCppText[3]
        #expect(try Self.turn(Array(text.utf8)).finishReason == "stop")
    }

    @Test func truncatedStreamIsAnError() {
        let bytes = Self.body(Array(Self.openAIToolCall.prefix(3)))
        #expect(throws: ProviderError.self) { try Self.turn(bytes) }
        #expect(throws: ProviderError.self) { try Self.turn([]) }
        let cut = Self.body(Self.openAIToolCall)
        // Cut inside the finish chunk: the JSON is incomplete.
        #expect(throws: ProviderError.self) { try Self.turn(Array(cut.prefix(cut.count - 300))) }
    }

    @Test func errorEventsAndGarbageAreErrors() {
        let cases = [
            "data: " + #"{"error":{"message":"upstream overloaded","type":"server_error"}}"# + "\n\n",
            "event: error\ndata: {\"message\":\"boom\"}\n\n",
            "data: not json at all\n\n",
            "data: " + #"{"choices":[{"delta":{"tool_calls":[{"index":9999999,"function":{"name":"x"}}]}}]}"# + "\n\n",
            "data: " + #"{"choices":[{"delta":{"tool_calls":[{"index":-1,"function":{"name":"x"}}]}}]}"# + "\n\n",
            "data: " + #"{"choices":[{"delta":{"tool_calls":[{"index":0.5,"function":{"name":"x"}}]}}]}"# + "\n\n",
            "data: " + #"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n",
        ]
        for text in cases {
            #expect(throws: ProviderError.self, "\(text)") { try Self.turn(Array(text.utf8)) }
        }
    }

    @Test func tooManyCallsAndTooMuchTextAreRefused() {
        var events: [String] = []
        for index in 0..<5 {
            events.append(#"{"choices":[{"delta":{"tool_calls":[{"index":\#(index),"id":"c\#(index)","function":{"name":"f","arguments":"{}"}}]}}]}"#)
        }
        var few = ChatStreamAccumulator(url: Self.url, maxToolCalls: 4)
        #expect(throws: ProviderError.self) { try few.feed(Self.body(events)) }
        var small = ChatStreamAccumulator(url: Self.url, maxToolCalls: 4, maxTextBytes: 1_000)
        let long = #"{"choices":[{"delta":{"content":""# + String(repeating: "a", count: 600) + #""}}]}"#
        #expect(throws: ProviderError.self) { try small.feed(Self.body([long, long])) }
        var line = ChatStreamAccumulator(url: Self.url, maxTextBytes: 100)
        #expect(throws: ProviderError.self) { try line.feed(Array(repeating: UInt8(ascii: "x"), count: 1_000)) }
    }

    @Test func parserJoinsDataLinesAndReadsEventType() throws {
        var parser = ServerSentEventParser()
        let events = try parser.feed(Array("event: update\ndata: a\ndata:b\nid: 4\nretry: 10\n: note\n\ndata\n\n".utf8))
        #expect(events == [.init(type: "update", data: "a\nb"), .init(type: nil, data: "")])
        #expect(parser.finish() == nil)
    }

    /// Random bytes, random truncations and random splices of real streams: every outcome
    /// is a turn or a ``ProviderError``, never a crash.
    @Test func fuzzedStreamsNeverCrash() {
        var generator = SplitMix64(seed: 0x5EED)
        let sources = [Self.body(Self.openAIToolCall), Self.body(Self.llamaCppText, newline: "\r\n"), Self.body(Self.ollamaTwoCalls, comments: true)]
        var outcomes = (turns: 0, errors: 0)
        for round in 0..<3_000 {
            var bytes = sources[round % sources.count]
            switch round % 4 {
            case 0: bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count + 1))))
            case 1:
                for _ in 0..<8 { bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next()) }
            case 2: bytes = (0..<Int(generator.next() % 512)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            default:
                let other = sources[Int(generator.next() % UInt64(sources.count))]
                bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count)))) + Array(other.suffix(Int(generator.next() % UInt64(other.count))))
            }
            var accumulator = ChatStreamAccumulator(url: Self.url, maxToolCalls: 8, maxTextBytes: 64 * 1024)
            do {
                var index = 0
                while index < bytes.count {
                    let end = min(bytes.count, index + 1 + Int(generator.next() % 64))
                    try accumulator.feed(bytes[index..<end])
                    index = end
                }
                _ = try accumulator.finish()
                outcomes.turns += 1
            } catch {
                #expect(error is ProviderError)
                outcomes.errors += 1
            }
        }
        #expect(outcomes.turns > 0 && outcomes.errors > 0)
    }
}

/// A small deterministic random generator for the fuzz test.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
