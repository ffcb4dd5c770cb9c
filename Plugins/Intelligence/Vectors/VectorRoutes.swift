import Foundation
import IntelligenceVectors
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import ModelProvider

/// The `/vectors/v1` routes of one portal: collections, entries, top-k queries (metadata
/// filters, hybrid with full-text) and the federated mesh (``VectorMeshRoutes``). See
/// `docs/intelligence-vectors.md`.
struct VectorRoutes: Sendable {
    /// The portal's shared state.
    let context: IntelligencePortal

    /// DDL of this part's tables in the `intelligence` schema (idempotent).
    static let schema = VectorStore.schema + "\n" + MeshFederation.portalSchema

    /// Reciprocal rank fusion's constant (the usual 60).
    static let fusionConstant = 60.0

    /// Answers one request below `/vectors/v1` (the path without `/v1`).
    func handle(_ request: PluginRequest) async -> PluginResponse {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        do {
            switch (request.method, parts.count, parts.first) {
            case ("GET", 1, "collections"): return try await listCollections(request)
            case ("POST", 1, "collections"): return try await createCollection(request)
            case (_, _, "mesh"): return try await VectorMeshRoutes(context: context).handle(request, parts: parts)
            case (let method, 2, "collections"), (let method, 3, "collections"):
                let name = parts[1]
                guard VectorCollectionLimits.isValidName(name) else {
                    return .error(status: 400, code: "invalid_name", message: "collection names are 1 to 63 of a-z, 0-9, _ and -", hint: "e.g. support-articles")
                }
                return try await collectionRoute(method: method, name: name, action: parts.count == 3 ? parts[2] : nil, request)
            default: break
            }
        } catch {
            return VectorInput.response(for: error, context: context)
        }
        return .error(status: 404, code: "not_found", message: "no route \(request.method) /vectors/v1\(request.path)", hint: "see docs/intelligence-vectors.md")
    }

    private func collectionRoute(method: String, name: String, action: String?, _ request: PluginRequest) async throws -> PluginResponse {
        switch (method, action) {
        case ("GET", nil): return try await describe(name, request)
        case ("PATCH", nil): return try await update(name, request)
        case ("DELETE", nil): return try await drop(name, request)
        case ("POST", "upsert"): return try await upsert(name, request)
        case ("POST", "delete"): return try await delete(name, request)
        case ("POST", "query"): return try await query(name, request)
        case ("POST", "publish"), ("POST", "unpublish"):
            return try await VectorMeshRoutes(context: context).publish(name, withdraw: action == "unpublish", request)
        default:
            return .error(status: 404, code: "not_found", message: "no route \(method) /vectors/v1\(request.path)", hint: "see docs/intelligence-vectors.md")
        }
    }

    // MARK: - Collections

    /// A collection as the API shows it.
    static func json(_ collection: VectorCollection) -> JSONValue {
        .object([
            "name": .string(collection.name), "dimension": JSONValue(collection.dimension), "metric": .string(collection.metric),
            "read": .string(collection.readAccess.rawValue), "count": JSONValue(collection.count), "created": .string(collection.created),
        ])
    }

    private func listCollections(_ request: PluginRequest) async throws -> PluginResponse {
        let access = VectorAccess(request: request)
        guard let role = access.readRole else { return access.refuseUnlessAdmin() ?? .error(status: 401, code: "unauthorized", message: "no credential") }
        let all = try await context.owner.run { connection in try await VectorStore.collections(connection) }
        let visible = all.filter { $0.readAccess.allows(role: role) }
        return .json(JSONValue.object(["collections": .array(visible.map(Self.json))]))
    }

    private func readAccess(_ body: [String: JSONValue]) throws(VectorInput) -> VectorCollection.ReadAccess? {
        guard let text = try VectorInput.string(body, "read", maxBytes: 64) else { return nil }
        guard let access = VectorCollection.ReadAccess(rawValue: text) else {
            throw VectorInput.invalid("\"read\" must be service_role, authenticated or anon, not \"\(text.prefix(64))\"")
        }
        return access
    }

    private func createCollection(_ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        let body = try VectorInput.object(request)
        guard let name = try VectorInput.string(body, "name", maxBytes: 256), VectorCollectionLimits.isValidName(name) else {
            throw VectorInput.invalid("\"name\" must be 1 to 63 of a-z, 0-9, _ and -", hint: "e.g. support-articles")
        }
        let range = VectorCollectionLimits.dimensions
        guard let dimension = try VectorInput.integer(body, "dimension", in: range) else {
            throw VectorInput.invalid("\"dimension\" is required: an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        let metric = try VectorInput.string(body, "metric", maxBytes: 64) ?? "cosine"
        guard VectorCollection.metrics.contains(metric) else { throw VectorInput.invalid("\"metric\" must be cosine, l2 or inner_product") }
        let access = try readAccess(body) ?? .serviceRole
        let created = try await context.owner.run { connection in
            try await VectorStore.create(name: name, dimension: dimension, metric: metric, readAccess: access, connection)
        }
        context.vectors.forget(name)
        return .json(Self.json(created), status: 201)
    }

    private func collection(_ name: String) async throws -> VectorCollection {
        guard let found = try await context.owner.run({ connection in try await VectorStore.collection(named: name, connection) }) else {
            throw VectorStoreError.collectionNotFound(name)
        }
        return found
    }

    /// The collection without its entry count (queries: no scan of every entry per request).
    private func collectionForQuery(_ name: String) async throws -> VectorCollection {
        guard let found = try await context.owner.run({ connection in try await VectorStore.collectionUncounted(named: name, connection) }) else {
            throw VectorStoreError.collectionNotFound(name)
        }
        return found
    }

    private func describe(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        let access = VectorAccess(request: request)
        guard access.readRole != nil else { return access.refuseUnlessAdmin() ?? .error(status: 401, code: "unauthorized", message: "no credential") }
        let found = try await collection(name)
        if let refusal = access.refuseUnlessReader(of: found) { return refusal }
        return .json(Self.json(found))
    }

    private func update(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        let body = try VectorInput.object(request)
        guard let access = try readAccess(body) else { throw VectorInput.invalid("send {\"read\": \"service_role\" | \"authenticated\" | \"anon\"}") }
        try await context.owner.run { connection in try await VectorStore.setReadAccess(access, of: name, connection) }
        return .json(Self.json(try await collection(name)))
    }

    private func drop(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        try await VectorMeshRoutes(context: context).withdrawAll(of: name)
        try await context.owner.run { connection in try await VectorStore.drop(name, connection) }
        context.vectors.forget(name)
        return .json(JSONValue.object(["dropped": .string(name)]))
    }

    // MARK: - Entries

    private func upsert(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        let body = try VectorInput.object(request)
        let target = try await collection(name)
        guard let items = body["entries"]?.arrayValue else { throw VectorInput.invalid("\"entries\" must be an array of {id, vector or text, metadata, content}") }
        guard (1...VectorCollectionLimits.batchSize).contains(items.count) else {
            throw VectorInput.invalid("\"entries\" must hold 1 to \(VectorCollectionLimits.batchSize) entries, found \(items.count)")
        }
        var entries: [VectorStore.EntryInput] = []
        var toEmbed: [(at: Int, text: String)] = []
        for (position, item) in items.enumerated() {
            guard let object = item.objectValue else { throw VectorInput.invalid("entries[\(position)] must be an object") }
            guard let id = try VectorInput.string(object, "id", maxBytes: VectorCollectionLimits.idBytes) else {
                throw VectorInput.invalid("entries[\(position)] needs an \"id\" (a string of 1 to \(VectorCollectionLimits.idBytes) bytes)")
            }
            if let problem = VectorCollectionLimits.problem(withID: id) { throw VectorInput.invalid("entries[\(position)]: \(problem)") }
            let metadata = try VectorInput.metadata(object["metadata"])
            let text = try VectorInput.string(object, "text")
            var content = try VectorInput.string(object, "content", maxBytes: VectorCollectionLimits.contentBytes)
            var vector: [Float] = []
            if let value = object["vector"], value != .null {
                vector = try VectorInput.vector(value, dimension: target.dimension, metric: target.metric, field: "entries[\(position)].vector")
            } else if let text {
                toEmbed.append((entries.count, text))
            } else {
                throw VectorInput.invalid("entries[\(position)] needs a \"vector\" or a \"text\" to embed")
            }
            if content == nil { content = text }
            entries.append(VectorStore.EntryInput(id: id, vector: vector, metadata: metadata, content: content))
        }
        // At most every entry is new: the collection must still fit the portal's index memory.
        let atMost = target.count.addingReportingOverflow(entries.count)
        guard !atMost.overflow, context.vectors.fits(entries: atMost.partialValue, dimension: target.dimension) else {
            throw VectorInput(
                response: .error(
                    status: 413, code: "index_memory_exceeded",
                    message:
                        "collection \"\(name)\" would hold up to \(target.count) + \(entries.count) entries of \(target.dimension) dimensions, more than this portal's index memory allows",
                    hint: "delete entries, use fewer dimensions, or raise [plugins.intelligence.config] index_memory_mb"))
        }
        if !toEmbed.isEmpty {
            let vectors = try await embed(toEmbed.map(\.text), dimension: target.dimension, metric: target.metric)
            for (slot, vector) in zip(toEmbed, vectors) { entries[slot.at].vector = vector }
        }
        let written = try await context.owner.run { connection in try await VectorStore.upsert(entries, into: name, connection) }
        try await sync(target)
        context.host.count("vector_upserts", by: Int64(written.count), portal: context.portal)
        return .json(JSONValue.object(["upserted": JSONValue(written.count), "ids": .array(written.map { .string($0.id) })]))
    }

    private func delete(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        let body = try VectorInput.object(request)
        let ids = try VectorInput.ids(body)
        let target = try await collection(name)
        let removed = try await context.owner.run { connection in try await VectorStore.delete(ids: ids, from: name, connection) }
        try await sync(target)
        context.host.count("vector_deletes", by: Int64(removed.count), portal: context.portal)
        return .json(JSONValue.object(["deleted": JSONValue(removed.count)]))
    }

    /// Brings the loaded index up to date after a write and schedules its snapshot.
    private func sync(_ collection: VectorCollection) async throws {
        let loaded = try await context.vectors.index(for: collection)
        if loaded.isDirty { context.vectors.scheduleSnapshot(of: loaded, dimension: collection.dimension, metric: collection.metric) }
    }

    /// Embeddings of `texts` from the portal's provider, checked against the collection.
    func embed(_ texts: [String], dimension: Int, metric: String) async throws -> [[Float]] {
        guard let model = try await context.model() else {
            throw VectorInput(
                response: .error(
                    status: 400, code: "no_embedding_provider", message: "no model provider is configured to embed text",
                    hint: "send \"vector\" values yourself, or configure a provider in the intelligence settings"))
        }
        let vectors: [[Float]]
        do {
            vectors = try await model.embed(texts)
        } catch let error as ProviderError {
            switch error.kind {
            case .invalidRequest, .notFound:
                throw VectorInput(
                    response: .error(
                        status: 400, code: "embedding_refused", message: error.message,
                        hint: "set embedding_model with PUT /intelligence/v1/provider, or send vectors"))
            case .rateLimited:
                var response = PluginResponse.error(status: 429, code: "provider_rate_limited", message: error.message, hint: "retry later, or send vectors")
                response.headers.append(("retry-after", String(error.retryAfterSeconds ?? 5)))
                throw VectorInput(response: response)
            default:
                throw VectorInput(response: .error(status: 502, code: "embedding_failed", message: error.message, hint: "retry, or send vectors"))
            }
        } catch {
            throw VectorInput(
                response: .error(status: 502, code: "embedding_failed", message: "the model provider did not embed the text: \(error)", hint: "retry, or send vectors"))
        }
        guard vectors.count == texts.count else {
            throw VectorInput(response: .error(status: 502, code: "embedding_failed", message: "the provider returned \(vectors.count) embeddings for \(texts.count) texts"))
        }
        context.host.count("vector_embeddings", by: Int64(texts.count), portal: context.portal)
        return try vectors.map { vector throws(VectorInput) in
            try VectorInput.vector(.array(vector.map { .number(Double($0)) }), dimension: dimension, metric: metric, field: "embedding")
        }
    }

    // MARK: - Queries

    private func query(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        let access = VectorAccess(request: request)
        guard access.readRole != nil else { return access.refuseUnlessAdmin() ?? .error(status: 401, code: "unauthorized", message: "no credential") }
        let body = try VectorInput.object(request)
        let target = try await collectionForQuery(name)
        if let refusal = access.refuseUnlessReader(of: target) { return refusal }
        return .json(try await search(target, body: body))
    }

    /// The agents' `vector_search`: the query `body` on the collection `name` for a caller
    /// with database role `role`, refused as the route would refuse that role. Errors are
    /// thrown as ``VectorInput`` (its response says why) or ``VectorStoreError``.
    func search(collection name: String, role: String, body: [String: JSONValue]) async throws -> JSONValue {
        let target = try await collectionForQuery(name)
        guard target.readAccess.allows(role: role) else {
            throw VectorInput(
                response: .error(
                    status: 403, code: "forbidden", message: "the collection \"\(name)\" is readable by \(target.readAccess.rawValue) and above, not \(role)"))
        }
        return try await search(target, body: body)
    }

    /// A top-k query of `target` (the caller's read access already checked): `vector` or
    /// `text`, `k`, `ef`, `filter`, `hybrid`.
    private func search(_ target: VectorCollection, body: [String: JSONValue]) async throws -> JSONValue {
        let name = target.name
        let k = try VectorInput.integer(body, "k", in: VectorCollectionLimits.topK) ?? 10
        let ef = try VectorInput.integer(body, "ef", in: VectorCollectionLimits.ef)
        let hybrid = try VectorInput.boolean(body, "hybrid") ?? false
        let filter = try VectorInput.filter(body)
        let text = try VectorInput.string(body, "text", maxBytes: 4_096)
        if hybrid && text == nil { throw VectorInput.invalid("a hybrid query needs \"text\" for the full-text side") }
        let vector: [Float]
        if let value = body["vector"], value != .null {
            vector = try VectorInput.vector(value, dimension: target.dimension, metric: target.metric)
        } else if let text {
            vector = try await embed([text], dimension: target.dimension, metric: target.metric)[0]
        } else {
            throw VectorInput.invalid("a query needs a \"vector\" or a \"text\" to embed")
        }
        let loaded = try await context.vectors.index(for: target)
        // A narrow filter: the admitted labels guide the index. A broad one (more than
        // `broad_filter_entries`): the index's nearest candidates are filtered instead, so no
        // request loads a million labels (and a broad filter may return fewer than k).
        var allowed: Set<UInt64>?
        var broadFilter = false
        if let filter {
            allowed = try await context.owner.run { connection in
                try await VectorStore.labels(collection: target.uid, matching: filter, limit: context.settings.vectors.broadFilterEntries, among: nil, connection)
            }
            broadFilter = allowed == nil
        }
        context.host.count("vector_queries", portal: context.portal)
        if let allowed, allowed.isEmpty { return Self.answer(name, hybrid: hybrid, results: []) }
        let candidates = hybrid ? min(max(k * 4, 50), 1_000) : k
        let index = loaded.index
        let permitted = allowed
        let hits: [VectorSearchHit]
        if broadFilter, let filter {
            let wide = min(max(candidates * 10, 100), VectorCollectionLimits.ef.upperBound)
            let nearest = try await BlockingWork.run { try index.search(vector, k: wide, ef: max(ef ?? wide, wide)) }
            let admitted = try await context.owner.run { connection in
                try await VectorStore.labels(collection: target.uid, matching: filter, limit: nil, among: nearest.map(\.label), connection)
            }
            hits = Array(nearest.filter { admitted?.contains($0.label) == true }.prefix(candidates))
        } else {
            hits = try await BlockingWork.run {
                try index.search(vector, k: candidates, ef: ef.map { max($0, candidates) }, allowed: permitted.map { set in { set.contains($0) } })
            }
        }
        var ranked: [(label: UInt64, distance: Float?, score: Double?)] = hits.map { ($0.label, $0.distance, nil) }
        if hybrid, let text {
            let textHits = try await context.owner.run { connection in
                try await VectorStore.textSearch(collection: target.uid, text: text, filter: filter, limit: candidates, connection)
            }
            ranked = Self.fuse(vector: hits, text: textHits.map(\.label))
        }
        let chosen = Array(ranked.prefix(k))
        let stored = try await context.owner.run { connection in
            try await VectorStore.entries(collection: target.uid, labels: chosen.map(\.label), connection)
        }
        let byLabel = Dictionary(stored.map { ($0.label, $0) }, uniquingKeysWith: { first, _ in first })
        let results: [JSONValue] = chosen.compactMap { hit in
            guard let entry = byLabel[hit.label] else { return nil }
            var result: [String: JSONValue] = [
                "id": .string(entry.id), "metadata": .object(entry.metadata), "content": JSONValue(entry.content),
                "distance": hit.distance.map { .number(Double($0)) } ?? .null,
            ]
            if let score = hit.score { result["score"] = .number(score) }
            return .object(result)
        }
        return Self.answer(name, hybrid: hybrid, results: results)
    }

    private static func answer(_ name: String, hybrid: Bool, results: [JSONValue]) -> JSONValue {
        .object(["collection": .string(name), "hybrid": .bool(hybrid), "results": .array(results)])
    }

    /// Reciprocal rank fusion of the vector ranking and the full-text ranking: each label
    /// scores the sum of 1 / (60 + rank) over the rankings it appears in; ties by label.
    static func fuse(vector: [VectorSearchHit], text: [UInt64]) -> [(label: UInt64, distance: Float?, score: Double?)] {
        var scores: [UInt64: Double] = [:]
        var distances: [UInt64: Float] = [:]
        for (rank, hit) in vector.enumerated() {
            scores[hit.label, default: 0] += 1 / (fusionConstant + Double(rank + 1))
            distances[hit.label] = hit.distance
        }
        for (rank, label) in text.enumerated() { scores[label, default: 0] += 1 / (fusionConstant + Double(rank + 1)) }
        return scores.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, distances[$0.key], $0.value) }
    }
}
