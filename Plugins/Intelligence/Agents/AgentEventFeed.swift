import AgentCore
import Foundation
import MeltyJSON
import MeltyPluginSDK

/// A run's steps as server-sent events: every stored step after `after` (event `step`, id
/// its `seq`), then new ones as they are stored, until the run ends (a last event `end` with
/// its status) or `limit` passed (the client reconnects with `Last-Event-ID`). A comment
/// line every 15 seconds keeps proxies from closing the stream.
struct AgentEventFeed: Sendable {
    let store: AgentStore
    let runID: UUID
    let after: Int
    let limit: Duration

    /// Writes the events until the run ends, the limit passes or the client leaves.
    func stream(to writer: ResponseBodyWriter) async throws {
        let deadline = ContinuousClock.now + limit
        var last = after
        var lastWrite = ContinuousClock.now
        try await writer.write("retry: 1000\n\n")
        while ContinuousClock.now < deadline {
            let steps = try await store.steps(of: [runID], after: last, limit: 200)
            for step in steps {
                try await writer.write("id: \(step.seq)\nevent: step\ndata: \(AgentJSON.text(AgentJSON.step(step)))\n\n")
                last = max(last, step.seq)
                lastWrite = .now
            }
            if steps.count < 200 {
                guard let run = try await store.run(runID) else { return }
                if run.status.isTerminal {
                    // Steps stored between the read above and the end.
                    for step in try await store.steps(of: [runID], after: last, limit: 200) {
                        try await writer.write("id: \(step.seq)\nevent: step\ndata: \(AgentJSON.text(AgentJSON.step(step)))\n\n")
                        last = max(last, step.seq)
                    }
                    try await writer.write("event: end\ndata: \(AgentJSON.text(AgentJSON.run(run)))\n\n")
                    return
                }
                if ContinuousClock.now - lastWrite >= .seconds(15) {
                    try await writer.write(": keep-alive\n\n")
                    lastWrite = .now
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
