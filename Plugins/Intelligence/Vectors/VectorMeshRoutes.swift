import Foundation
import IntelligenceVectors
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// The federated Knowledge Mesh routes: `GET/PUT /mesh` (membership), `POST /mesh/query`,
/// `GET /mesh/collections/<m>/aggregates?key=...`, and `POST /collections/<c>/publish` and
/// `/unpublish`. All need `service_role` or an AAL2 admin; searching needs the portal to have
/// opted in to searching, publishing to publishing. Copies are anonymised before they leave
/// the portal (``Anonymizer``).
struct VectorMeshRoutes: Sendable {
    /// The portal's shared state.
    let context: IntelligencePortal

    /// Answers a request below `/vectors/v1/mesh` (`parts`: the path's segments).
    func handle(_ request: PluginRequest, parts: [String]) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        switch (request.method, parts.count) {
        case ("GET", 1): return try await overview()
        case ("PUT", 1): return try await setMembership(request)
        case ("POST", 2) where parts[1] == "query": return try await query(request)
        case ("GET", 4) where parts[1] == "collections" && parts[3] == "aggregates": return try await aggregates(parts[2], request)
        default:
            return .error(status: 404, code: "not_found", message: "no route \(request.method) /vectors/v1\(request.path)", hint: "see docs/intelligence-vectors.md#federation")
        }
    }

    private var portalName: String { context.portal.name }

    private func membershipJSON(_ membership: MeshFederation.Membership?) -> JSONValue {
        .object([
            "publish": .bool(membership?.publish ?? false), "search": .bool(membership?.search ?? false),
            "published_entries": JSONValue(membership?.publishedEntries ?? 0),
        ])
    }

    private func overview() async throws -> PluginResponse {
        let hub = try await context.vectors.mesh()
        let (membership, collections) = try await hub.run { connection in
            (try await MeshFederation.membership(of: portalName, connection), try await MeshFederation.collections(connection))
        }
        let listed: [JSONValue] = collections.map { summary in
            .object([
                "name": .string(summary.name), "dimension": JSONValue(summary.dimension), "metric": .string(summary.metric),
                "entries": JSONValue(summary.entries), "publishers": JSONValue(summary.publishers),
            ])
        }
        return .json(
            JSONValue.object([
                "membership": membershipJSON(membership), "collections": .array(listed),
                "min_group_size": JSONValue(context.settings.vectors.meshMinGroupSize),
            ]))
    }

    private func setMembership(_ request: PluginRequest) async throws -> PluginResponse {
        let body = try VectorInput.object(request)
        guard let publish = try VectorInput.boolean(body, "publish"), let search = try VectorInput.boolean(body, "search") else {
            throw VectorInput.invalid("send {\"publish\": true|false, \"search\": true|false}")
        }
        let hub = try await context.vectors.mesh()
        let membership = try await hub.run { connection in
            try await MeshFederation.setMembership(of: portalName, publish: publish, search: search, connection)
        }
        if !publish {
            _ = try await context.owner.run { connection in try await MeshFederation.forgetMeshIDs(collection: nil, ids: nil, meshCollection: nil, connection) }
        }
        try? await context.host.audit(
            action: "intelligence.mesh.membership", target: portalName, details: ["publish": .bool(publish), "search": .bool(search)], portal: context.portal)
        return .json(JSONValue.object(["membership": membershipJSON(membership)]))
    }

    /// Publishes (or withdraws) entries of a portal collection to a mesh collection.
    func publish(_ name: String, withdraw: Bool, _ request: PluginRequest) async throws -> PluginResponse {
        if let refusal = VectorAccess(request: request).refuseUnlessAdmin() { return refusal }
        let body = try VectorInput.object(request)
        let ids = try VectorInput.ids(body)
        let meshName = try VectorInput.string(body, "mesh_collection", maxBytes: 256) ?? name
        guard VectorCollectionLimits.isValidName(meshName) else { throw VectorInput.invalid("\"mesh_collection\" must be 1 to 63 of a-z, 0-9, _ and -") }
        guard let target = try await context.owner.run({ connection in try await VectorStore.collection(named: name, connection) }) else {
            throw VectorStoreError.collectionNotFound(name)
        }
        let hub = try await context.vectors.mesh()
        let membership = try await hub.run { connection in try await MeshFederation.membership(of: portalName, connection) }
        guard membership?.publish == true else { throw MeshFederation.Refusal.notOptedIn("publishing") }
        if withdraw {
            let forgotten = try await context.owner.run { connection in
                try await MeshFederation.forgetMeshIDs(collection: target.uid, ids: ids, meshCollection: meshName, connection)
            }
            let removed = try await hub.run { connection in
                try await MeshFederation.unpublish(meshIDs: forgotten[meshName] ?? [], from: meshName, portal: portalName, connection)
            }
            return .json(JSONValue.object(["withdrawn": JSONValue(removed), "mesh_collection": .string(meshName)]))
        }
        let (entries, meshIDs) = try await context.owner.run { connection in
            let entries = try await VectorStore.entries(collection: target.uid, ids: ids, connection)
            let meshIDs = try await MeshFederation.meshIDs(collection: target.uid, ids: entries.map(\.id), meshCollection: meshName, connection)
            return (entries, meshIDs)
        }
        let copies: [MeshFederation.Copy] = entries.compactMap { entry in
            guard let meshID = meshIDs[entry.id], let vector = entry.vector else { return nil }
            let anonymizer = Anonymizer(metadata: entry.metadata)
            return MeshFederation.Copy(meshID: meshID, vector: vector, metadata: anonymizer.scrub(metadata: entry.metadata), content: entry.content.map(anonymizer.scrub))
        }
        let published =
            copies.isEmpty
            ? 0
            : try await hub.run { connection in
                try await MeshFederation.publish(copies, to: meshName, dimension: target.dimension, metric: target.metric, from: portalName, connection)
            }
        let found = Set(entries.map(\.id))
        context.host.count("mesh_published", by: Int64(published), portal: context.portal)
        return .json(
            JSONValue.object([
                "published": JSONValue(published), "mesh_collection": .string(meshName),
                "missing": .array(ids.filter { !found.contains($0) }.map(JSONValue.string)),
            ]))
    }

    /// Withdraws every copy published from a collection (before it is dropped).
    func withdrawAll(of name: String) async throws {
        guard let target = try await context.owner.run({ connection in try await VectorStore.collection(named: name, connection) }) else { return }
        let forgotten = try await context.owner.run { connection in
            try await MeshFederation.forgetMeshIDs(collection: target.uid, ids: nil, meshCollection: nil, connection)
        }
        guard !forgotten.isEmpty else { return }
        let hub = try await context.vectors.mesh()
        for (meshName, meshIDs) in forgotten {
            for start in stride(from: 0, to: meshIDs.count, by: VectorCollectionLimits.batchSize) {
                let slice = Array(meshIDs[start..<min(start + VectorCollectionLimits.batchSize, meshIDs.count)])
                _ = try await hub.run { connection in try await MeshFederation.unpublish(meshIDs: slice, from: meshName, portal: portalName, connection) }
            }
        }
    }

    private func searchable(_ hub: PostgresPool) async throws {
        let membership = try await hub.run { connection in try await MeshFederation.membership(of: portalName, connection) }
        guard membership?.search == true else { throw MeshFederation.Refusal.notOptedIn("searching") }
    }

    private func query(_ request: PluginRequest) async throws -> PluginResponse {
        let body = try VectorInput.object(request)
        guard let name = try VectorInput.string(body, "collection", maxBytes: 256), VectorCollectionLimits.isValidName(name) else {
            throw VectorInput.invalid("\"collection\" must name a mesh collection (1 to 63 of a-z, 0-9, _ and -)")
        }
        let k = try VectorInput.integer(body, "k", in: VectorCollectionLimits.topK) ?? 10
        let filter = try VectorInput.filter(body)
        let text = try VectorInput.string(body, "text", maxBytes: 4_096)
        let hub = try await context.vectors.mesh()
        try await searchable(hub)
        let summaries = try await hub.run { connection in try await MeshFederation.collections(connection) }
        guard let summary = summaries.first(where: { $0.name == name }) else { throw MeshFederation.Refusal.collectionNotFound(name) }
        let vector: [Float]
        if let value = body["vector"], value != .null {
            vector = try VectorInput.vector(value, dimension: summary.dimension, metric: summary.metric)
        } else if let text {
            vector = try await VectorRoutes(context: context).embed([text], dimension: summary.dimension, metric: summary.metric)[0]
        } else {
            throw VectorInput.invalid("a mesh query needs a \"vector\" or a \"text\" to embed")
        }
        let hits = try await hub.run { connection in
            try await MeshFederation.search(name, vector: vector, k: k, filter: filter, portal: portalName, connection)
        }
        context.host.count("mesh_queries", portal: context.portal)
        let results: [JSONValue] = hits.map { hit in
            .object([
                "mesh_id": .string(hit.meshID), "distance": hit.distance.isFinite ? .number(hit.distance) : .null, "metadata": .object(hit.metadata),
                "content": JSONValue(hit.content),
            ])
        }
        return .json(JSONValue.object(["collection": .string(name), "results": .array(results)]))
    }

    private func aggregates(_ name: String, _ request: PluginRequest) async throws -> PluginResponse {
        guard VectorCollectionLimits.isValidName(name) else { throw VectorInput.invalid("mesh collection names are 1 to 63 of a-z, 0-9, _ and -") }
        guard let key = request.queryItems["key"] else { throw VectorInput.invalid("add ?key=<metadata key> (a dotted path)") }
        let path: [String]
        do {
            path = try VectorFilter.parsePath(key)
        } catch {
            throw VectorInput.invalid("invalid key: \(error.message)")
        }
        let minimum = context.settings.vectors.meshMinGroupSize
        let hub = try await context.vectors.mesh()
        try await searchable(hub)
        let result = try await hub.run { connection in
            try await MeshFederation.aggregates(name, path: path, minimum: minimum, portal: portalName, connection)
        }
        let groups: [JSONValue] = result.groups.map { .object(["value": .string($0.value), "count": JSONValue($0.count)]) }
        return .json(
            JSONValue.object([
                "collection": .string(name), "key": .string(key), "groups": .array(groups), "withheld_groups": JSONValue(result.withheld),
                "min_group_size": JSONValue(minimum),
            ]))
    }
}
