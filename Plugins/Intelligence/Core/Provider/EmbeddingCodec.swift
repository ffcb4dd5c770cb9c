import Foundation
import MeltyJSON

/// The JSON of OpenAI's `POST /embeddings`.
public enum EmbeddingCodec {
    /// The request body embedding `texts` with `model` (floats asked for explicitly).
    public static func requestBody(model: String, texts: [String]) throws -> [UInt8] {
        let body: [String: JSONValue] = ["model": .string(model), "input": .array(texts.map(JSONValue.string)), "encoding_format": "float"]
        do {
            return try JSONValue.serialize(body)
        } catch {
            throw ProviderError(.invalidRequest, message: "the embeddings request could not be encoded: \(error)")
        }
    }

    /// The vectors of an answer for `count` texts, in input order (by each item's `index`),
    /// and the prompt tokens it reports. Each vector is float numbers or base64
    /// little-endian float32; all must have the same dimension, at most `maxDimensions`.
    public static func decodeResponse(_ body: [UInt8], count: Int, url: String, maxDimensions: Int = 16_384) throws -> (vectors: [[Float]], promptTokens: Int) {
        guard let object = JSONValue.object(json: body), let items = object["data"]?.arrayValue else {
            throw ProviderError(.malformed, message: "the model provider at \(url) answered embeddings without a data array: \(ChatCompletionCodec.snippet(body))")
        }
        guard items.count == count else {
            throw ProviderError(.malformed, message: "the model provider at \(url) answered \(items.count) embeddings for \(count) texts")
        }
        var vectors = [[Float]?](repeating: nil, count: count)
        for (position, item) in items.enumerated() {
            guard let entry = item.objectValue else {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered an embedding that is not an object")
            }
            var index = position
            if let number = entry["index"]?.numberValue {
                guard number.isFinite, number >= 0, number < Double(count), let exact = Int(exactly: number) else {
                    throw ProviderError(.malformed, message: "the model provider at \(url) answered an embedding index outside 0..<\(count)")
                }
                index = exact
            }
            guard vectors[index] == nil else {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered embedding \(index) twice")
            }
            let vector = try decodeVector(entry["embedding"], url: url, maxDimensions: maxDimensions)
            if let first = vectors.lazy.compactMap({ $0 }).first, first.count != vector.count {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered embeddings of different dimensions (\(first.count) and \(vector.count))")
            }
            vectors[index] = vector
        }
        let decoded = vectors.compactMap { $0 }
        guard decoded.count == count else {
            throw ProviderError(.malformed, message: "the model provider at \(url) left some texts without an embedding")
        }
        return (decoded, ChatCompletionCodec.tokens(object["usage"]?.objectValue?["prompt_tokens"]))
    }

    /// One vector: an array of finite numbers or base64 float32.
    static func decodeVector(_ value: JSONValue?, url: String, maxDimensions: Int) throws -> [Float] {
        var vector: [Float] = []
        switch value {
        case .array(let numbers)?:
            guard numbers.count <= maxDimensions else {
                throw ProviderError(.tooLarge, message: "the model provider at \(url) answered an embedding of \(numbers.count) dimensions (at most \(maxDimensions))")
            }
            vector.reserveCapacity(numbers.count)
            for number in numbers {
                guard let double = number.numberValue, double.isFinite, abs(double) <= 3.0e38 else {
                    throw ProviderError(.malformed, message: "the model provider at \(url) answered an embedding with a value that is not a finite number")
                }
                vector.append(Float(double))
            }
        case .string(let text)?:
            guard let data = Data(base64Encoded: text), data.count % 4 == 0, data.count / 4 <= maxDimensions else {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered a base64 embedding that is not float32 data")
            }
            let bytes = [UInt8](data)
            vector.reserveCapacity(bytes.count / 4)
            for offset in stride(from: 0, to: bytes.count, by: 4) {
                let bits = UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
                let float = Float(bitPattern: bits)
                guard float.isFinite else {
                    throw ProviderError(.malformed, message: "the model provider at \(url) answered an embedding with a value that is not a finite number")
                }
                vector.append(float)
            }
        default:
            throw ProviderError(.malformed, message: "the model provider at \(url) answered an item without an embedding")
        }
        guard !vector.isEmpty else { throw ProviderError(.malformed, message: "the model provider at \(url) answered an empty embedding") }
        return vector
    }
}
