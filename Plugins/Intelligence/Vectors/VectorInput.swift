import Foundation
import IntelligenceVectors
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// Reads and checks the pieces of a Knowledge Mesh request body; every refusal is a 4xx
/// response that says what to send instead.
struct VectorInput: Error {
    /// The response to answer with.
    let response: PluginResponse

    /// Longest request body read.
    static let maxBodyBytes = 64 << 20
    /// Longest `text` to embed or search for, in bytes.
    static let maxTextBytes = 32 * 1024

    /// A 400 `invalid_request`.
    static func invalid(_ message: String, hint: String? = nil) -> VectorInput {
        VectorInput(response: .error(status: 400, code: "invalid_request", message: message, hint: hint))
    }

    /// The body as a JSON object (an empty body is an empty object).
    static func object(_ request: PluginRequest) throws(VectorInput) -> [String: JSONValue] {
        if request.body.isEmpty { return [:] }
        guard request.body.count <= maxBodyBytes else {
            throw VectorInput(
                response: .error(status: 413, code: "payload_too_large", message: "the body has \(request.body.count) bytes; at most \(maxBodyBytes) are read"))
        }
        guard let object = JSONValue.object(json: request.body) else { throw invalid("the body is not a JSON object", hint: "send application/json") }
        return object
    }

    /// An optional string member without NUL, at most `maxBytes`.
    static func string(_ object: [String: JSONValue], _ key: String, maxBytes: Int = maxTextBytes) throws(VectorInput) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw invalid("\"\(key)\" must be a string, not \(value.kind)") }
        guard text.utf8.count <= maxBytes else { throw invalid("\"\(key)\" has \(text.utf8.count) bytes; at most \(maxBytes) are allowed") }
        guard !text.contains("\u{0}") else { throw invalid("\"\(key)\" contains a NUL character") }
        return text
    }

    /// An optional integer member within `range`.
    static func integer(_ object: [String: JSONValue], _ key: String, in range: ClosedRange<Int>) throws(VectorInput) -> Int? {
        guard let value = object[key], value != .null else { return nil }
        guard case .number(let number) = value, number.rounded() == number, Double(range.lowerBound) <= number, number <= Double(range.upperBound),
            let integer = Int(exactly: number)
        else { throw invalid("\"\(key)\" must be an integer from \(range.lowerBound) to \(range.upperBound)") }
        return integer
    }

    /// An optional boolean member.
    static func boolean(_ object: [String: JSONValue], _ key: String) throws(VectorInput) -> Bool? {
        guard let value = object[key], value != .null else { return nil }
        guard let flag = value.boolValue else { throw invalid("\"\(key)\" must be true or false") }
        return flag
    }

    /// A vector of `dimension` finite 32-bit floats (non-zero for cosine).
    static func vector(_ value: JSONValue, dimension: Int, metric: String, field: String = "vector") throws(VectorInput) -> [Float] {
        guard let items = value.arrayValue else { throw invalid("\"\(field)\" must be an array of numbers") }
        var numbers: [Double] = []
        numbers.reserveCapacity(items.count)
        for item in items {
            guard let number = item.numberValue else { throw invalid("\"\(field)\" must hold only numbers, found \(item.kind)") }
            numbers.append(number)
        }
        if let problem = VectorCollectionLimits.problem(withVector: numbers, dimension: dimension) { throw invalid(problem) }
        let floats = numbers.map { Float($0) }
        if metric == "cosine" && floats.allSatisfy({ $0 == 0 }) {
            throw invalid("\"\(field)\" is all zeros, which has no direction for the cosine metric")
        }
        return floats
    }

    /// A list of entry ids (1...batch size, each valid).
    static func ids(_ object: [String: JSONValue]) throws(VectorInput) -> [String] {
        guard let items = object["ids"]?.arrayValue else { throw invalid("\"ids\" must be an array of entry ids") }
        guard (1...VectorCollectionLimits.batchSize).contains(items.count) else {
            throw invalid("\"ids\" must hold 1 to \(VectorCollectionLimits.batchSize) ids, found \(items.count)")
        }
        var ids: [String] = []
        for item in items {
            guard let id = item.stringValue else { throw invalid("\"ids\" must hold strings, found \(item.kind)") }
            if let problem = VectorCollectionLimits.problem(withID: id) { throw invalid(problem) }
            ids.append(id)
        }
        return ids
    }

    /// Checks a metadata object: serialized size and no NUL anywhere (Postgres refuses it).
    static func metadata(_ value: JSONValue?) throws(VectorInput) -> [String: JSONValue] {
        guard let value, value != .null else { return [:] }
        guard let object = value.objectValue else { throw invalid("\"metadata\" must be a JSON object, not \(value.kind)") }
        let size = (try? JSONValue.serialize(value))?.count ?? Int.max
        guard size <= VectorCollectionLimits.metadataBytes else {
            throw invalid("\"metadata\" has \(size) bytes serialized; at most \(VectorCollectionLimits.metadataBytes) are allowed")
        }
        guard !containsNUL(value) else { throw invalid("\"metadata\" contains a NUL character") }
        return object
    }

    private static func containsNUL(_ value: JSONValue) -> Bool {
        switch value {
        case .string(let text): return text.contains("\u{0}")
        case .array(let items): return items.contains(where: containsNUL)
        case .object(let members): return members.contains { $0.key.contains("\u{0}") || containsNUL($0.value) }
        default: return false
        }
    }

    /// An optional metadata filter.
    static func filter(_ object: [String: JSONValue]) throws(VectorInput) -> VectorFilter? {
        guard let value = object["filter"], value != .null else { return nil }
        do {
            return try VectorFilter.parse(value)
        } catch {
            throw invalid("invalid filter: \(error.message)", hint: "see docs/intelligence-vectors.md#filters")
        }
    }

    /// The response for an error thrown below a route.
    static func response(for error: any Error, context: IntelligencePortal) -> PluginResponse {
        switch error {
        case let input as VectorInput: return input.response
        case let store as VectorStoreError:
            switch store {
            case .collectionNotFound: return .error(status: 404, code: "collection_not_found", message: store.description, hint: "GET /vectors/v1/collections lists them")
            case .collectionExists: return .error(status: 409, code: "collection_exists", message: store.description)
            case .limitExceeded: return .error(status: 413, code: "limit_exceeded", message: store.description)
            }
        case let refusal as MeshFederation.Refusal:
            switch refusal {
            case .notOptedIn:
                return .error(
                    status: 403, code: "mesh_not_opted_in", message: refusal.description,
                    hint: "opt in with PUT /vectors/v1/mesh {\"publish\": true, \"search\": true} (service_role or AAL2 admin)")
            case .collectionNotFound: return .error(status: 404, code: "mesh_collection_not_found", message: refusal.description, hint: "GET /vectors/v1/mesh lists them")
            case .shapeMismatch: return .error(status: 409, code: "shape_mismatch", message: refusal.description)
            }
        case let stale as LoadedCollection.StaleIndex:
            var response = PluginResponse.error(status: 503, code: "index_rebuilding", message: "\(stale); it is being rebuilt", hint: "retry shortly")
            response.headers.append(("retry-after", "1"))
            return response
        case let index as VectorIndexError:
            return .error(status: 400, code: "invalid_request", message: "the index refused the request: \(index.message)")
        case let pool as PostgresPoolError:
            var response = PluginResponse.error(status: 503, code: "database_busy", message: pool.description, hint: "retry shortly")
            response.headers.append(("retry-after", String(pool.retryAfterSeconds)))
            return response
        case let postgres as PostgresError:
            switch postgres.sqlState ?? "" {
            case PostgresError.nulByteState, "22P05", "22P02", "22023", "54000", "22003", "2201B":
                return .error(status: 400, code: "invalid_request", message: "the database refused a value: \(postgres.message)")
            case "23505": return .error(status: 409, code: "conflict", message: postgres.message)
            default:
                context.host.log(.error, "intelligence: vectors: \(postgres)", portal: context.portal)
                var response = PluginResponse.error(status: 503, code: "database_error", message: "the database could not complete the request", hint: "retry shortly")
                response.headers.append(("retry-after", "1"))
                return response
            }
        default:
            context.host.log(.error, "intelligence: vectors: \(error)", portal: context.portal)
            var response = PluginResponse.error(status: 503, code: "vectors_unavailable", message: "the request could not be completed: \(error)", hint: "retry shortly")
            response.headers.append(("retry-after", "1"))
            return response
        }
    }
}
