import AgentCore
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// The `/agents/v1` routes of one portal: start runs, read them with their sub-agent tree
/// and steps, follow a run's steps as server-sent events, cancel, and decide SQL writes.
struct AgentRoutes: Sendable {
    let context: IntelligencePortal

    /// DDL of this part's tables in the `intelligence` schema (idempotent).
    static let schema = AgentStore.schema

    /// The largest request body the routes read.
    static let bodyLimit = 65_536

    func handle(_ request: PluginRequest) async -> PluginResponse {
        context.agents.bind(context)
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard parts.first == "runs" else {
            return .error(status: 404, code: "not_found", message: "no route \(request.method) /agents/v1\(request.path)", hint: "the runs live at /agents/v1/runs")
        }
        let caller: AgentCallerAccess
        switch AgentCallerAccess.resolve(request.credential) {
        case .success(let resolved): caller = resolved
        case .failure(let refusal): return refusal.response
        }
        do {
            switch (request.method, parts.count) {
            case ("POST", 1): return try await create(request, caller: caller)
            case ("GET", 1): return try await list(request, caller: caller)
            case ("GET", 2): return try await show(parts[1], caller: caller)
            case ("GET", 3) where parts[2] == "events": return try await events(parts[1], request: request, caller: caller)
            case ("POST", 3) where parts[2] == "cancel": return try await cancel(parts[1], caller: caller)
            case ("POST", 3) where parts[2] == "approve" || parts[2] == "reject":
                return try await decide(parts[1], approve: parts[2] == "approve", request: request, caller: caller)
            default:
                return .error(
                    status: parts.count <= 3 ? 405 : 404, code: parts.count <= 3 ? "method_not_allowed" : "not_found",
                    message: "no route \(request.method) /agents/v1\(request.path)")
            }
        } catch let error as PostgresPoolError {
            var response = PluginResponse.error(status: 503, code: "database_unavailable", message: error.description, hint: "retry shortly")
            response.headers.append(("retry-after", String(error.retryAfterSeconds)))
            return response
        } catch {
            context.host.log(.error, "agents: \(request.method) \(request.path) failed: \(error)", portal: context.portal)
            return .error(status: 503, code: "agents_unavailable", message: "the agents could not answer: \(error)", hint: "retry shortly")
        }
    }

    // MARK: - Routes

    private func create(_ request: PluginRequest, caller: AgentCallerAccess) async throws -> PluginResponse {
        let body: [UInt8]
        do {
            body = try await request.bodyStream?.collect(upTo: Self.bodyLimit) ?? request.body
        } catch {
            return .error(status: 413, code: "body_too_large", message: "the request body is larger than \(Self.bodyLimit) bytes or could not be read: \(error)")
        }
        let parsed: AgentRunRequest
        switch AgentRunRequest.parse(body, settings: context.settings.agents, privileged: PortalToolbox.isPrivileged(caller.caller)) {
        case .success(let value): parsed = value
        case .failure(let refusal): return refusal.response
        }
        guard try await context.model() != nil else {
            return .error(
                status: 409, code: "model_provider_required",
                message: "agents need a model provider: this portal has none configured, so no run was started",
                hint: "configure one with PUT /p/<portal>/intelligence/v1/provider (service_role or an aal2 admin)")
        }
        guard context.agents.activeCount < context.settings.agents.maxActiveRuns else {
            var response = PluginResponse.error(
                status: 429, code: "too_many_runs", message: "this portal already works on \(context.settings.agents.maxActiveRuns) runs", hint: "retry when one ended")
            response.headers.append(("retry-after", "5"))
            return response
        }
        if let subject = caller.caller.subject, !caller.seesAll {
            let limit = context.settings.agents.maxActiveRunsPerUser
            let working = try await context.agents.store.pool.run { connection in
                try await connection.query(
                    """
                    SELECT count(*) FROM intelligence.agent_runs
                    WHERE caller_subject = $1 AND parent_id IS NULL AND status IN ('queued', 'running', 'waiting_approval')
                    """, [subject]
                ).scalar
            }
            if let working, let count = Int(working), count >= limit {
                var response = PluginResponse.error(
                    status: 429, code: "too_many_runs", message: "you already have \(count) runs working; at most \(limit) per user",
                    hint: "wait for one to end, or cancel one (POST /agents/v1/runs/<id>/cancel)")
                response.headers.append(("retry-after", "5"))
                return response
            }
        }
        let run = try await context.agents.store.create(
            AgentStore.NewRun(goal: parsed.goal, tools: parsed.tools, budget: parsed.budget, caller: caller.caller), owner: context.agents.instance,
            leaseSeconds: context.settings.agents.leaseSeconds)
        do {
            try await context.host.audit(
                action: "agent.run", target: run.id.uuidString.lowercased(),
                details: ["tools": .array(parsed.tools.map(JSONValue.string)), "role": .string(caller.caller.role), "steps": JSONValue(parsed.budget.steps)],
                portal: context.portal)
        } catch {
            // Unaudited runs never start.
            try await context.agents.store.finish(run.id, status: .failed, reason: "the audit log could not record the run: \(error)", answer: nil, usage: AgentUsage())
            throw error
        }
        context.agents.launch(run.id)
        return .json(["id": .string(run.id.uuidString.lowercased()), "status": .string(run.status.rawValue), "budget": AgentJSON.budget(run.budget)] as JSONValue, status: 202)
    }

    private func list(_ request: PluginRequest, caller: AgentCallerAccess) async throws -> PluginResponse {
        let limit = request.queryItems["limit"].flatMap { Int($0) }.map { min(max($0, 1), 500) } ?? 100
        let runs = try await context.agents.store.rootRuns(subject: caller.caller.subject, everyone: caller.seesAll, limit: limit)
        return .json(["runs": .array(runs.map(AgentJSON.run))] as JSONValue)
    }

    private func show(_ idText: String, caller: AgentCallerAccess) async throws -> PluginResponse {
        guard let run = try await visibleRun(idText, caller: caller) else { return Self.notFound(idText) }
        let tree = try await context.agents.store.tree(of: run.id, limit: 500)
        let ids = tree.map(\.id)
        let steps = try await context.agents.store.steps(of: ids, limit: 5_000)
        let approvals = try await context.agents.store.approvals(of: ids)
        var body = AgentJSON.run(run).objectValue ?? [:]
        body["runs"] = .array(tree.map(AgentJSON.run))
        body["steps"] = .array(steps.map(AgentJSON.step))
        body["approvals"] = .array(approvals.map(AgentJSON.approval))
        return .json(JSONValue.object(body))
    }

    private func cancel(_ idText: String, caller: AgentCallerAccess) async throws -> PluginResponse {
        guard let run = try await visibleRun(idText, caller: caller) else { return Self.notFound(idText) }
        let cancelled = try await context.agents.store.cancel(run.id, reason: "cancelled by \(caller.name)")
        context.agents.stop(cancelled)
        if !cancelled.isEmpty {
            try await context.host.audit(
                action: "agent.cancel", target: run.id.uuidString.lowercased(), details: ["runs": JSONValue(cancelled.count)], portal: context.portal)
        }
        guard let now = try await context.agents.store.run(run.id) else { return Self.notFound(idText) }
        return .json(["id": .string(now.id.uuidString.lowercased()), "status": .string(now.status.rawValue), "cancelled": JSONValue(cancelled.count)] as JSONValue)
    }

    private func decide(_ idText: String, approve: Bool, request: PluginRequest, caller: AgentCallerAccess) async throws -> PluginResponse {
        guard caller.seesAll else {
            return .error(
                status: 403, code: "approval_requires_admin", message: "only service_role or an aal2 admin may approve or reject an agent's SQL write",
                hint: "ask an administrator to decide in the Studio's Agents page")
        }
        guard let run = try await visibleRun(idText, caller: caller) else { return Self.notFound(idText) }
        let approvalID: UUID?
        switch try await Self.approvalID(request) {
        case .success(let id): approvalID = id
        case .failure(let refusal): return refusal.response
        }
        // The run itself or a sub-agent of it may wait: the approval named in the body is
        // decided (the one the administrator looked at), else the oldest pending one.
        let tree = try await context.agents.store.tree(of: run.id, limit: 500).map(\.id)
        guard let decided = try await context.agents.store.decide(runs: tree, approval: approvalID, approve: approve, by: caller.name) else {
            if let approvalID {
                return .error(
                    status: 409, code: "approval_not_pending",
                    message: "approval \(approvalID.uuidString.lowercased()) of run \(idText) is not waiting for a decision (decided already, or not this run's)",
                    hint: "reload the run: GET /agents/v1/runs/<id> lists its approvals")
            }
            return .error(status: 409, code: "no_pending_approval", message: "run \(idText) has no SQL write waiting for a decision")
        }
        let step = try await context.agents.store.append(
            decided.runID, kind: .approval,
            contentJSON: AgentJSON.text([
                "approval_id": .string(decided.id.uuidString.lowercased()), "call_id": .string(decided.callID), "status": .string(decided.status.rawValue),
                "decided_by": .string(caller.name),
            ]))
        try await context.host.audit(
            action: approve ? "agent.approve" : "agent.reject", target: decided.runID.uuidString.lowercased(),
            details: ["approval": .string(decided.id.uuidString.lowercased()), "seq": JSONValue(step.seq)], portal: context.portal)
        await context.agents.resumeDecided()
        return .json(AgentJSON.approval(decided))
    }

    private func events(_ idText: String, request: PluginRequest, caller: AgentCallerAccess) async throws -> PluginResponse {
        guard let run = try await visibleRun(idText, caller: caller) else { return Self.notFound(idText) }
        let after = (request.header("last-event-id") ?? request.queryItems["after"]).flatMap { Int($0) }.map { min(max(0, $0), Int(Int32.max)) } ?? 0
        let store = context.agents.store
        let limit = Duration.seconds(min(3_600, max(60, run.budget.wallClockMilliseconds / 1000 + 60)))
        let slot: AgentFeedSlot
        switch context.agents.feeds.take(subject: caller.name) {
        case .success(let taken): slot = taken
        case .failure(let refusal):
            var response = refusal.response
            response.headers.append(("retry-after", "5"))
            return response
        }
        return .streaming(status: 200, headers: [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]) { writer in
            // The slot is given back when the stream ends (or its closure is dropped).
            defer { withExtendedLifetime(slot) {} }
            try await AgentEventFeed(store: store, runID: run.id, after: after, limit: limit).stream(to: writer)
        }
    }

    // MARK: - Helpers

    /// The optional `{"approval_id": "<uuid>"}` body of approve and reject (empty: none).
    private static func approvalID(_ request: PluginRequest) async throws -> Result<UUID?, AgentRefusal> {
        let body: [UInt8]
        do {
            body = try await request.bodyStream?.collect(upTo: 4_096) ?? request.body
        } catch {
            return .failure(AgentRefusal(413, "body_too_large", "the body of approve or reject is at most 4,096 bytes: {\"approval_id\": \"<uuid>\"}"))
        }
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success(nil) }
        guard let object = JSONValue.object(json: body), object.keys.allSatisfy({ $0 == "approval_id" }) else {
            return .failure(AgentRefusal(400, "invalid_body", "the body must be empty or {\"approval_id\": \"<uuid>\"}"))
        }
        guard let value = object["approval_id"], value != .null else { return .success(nil) }
        guard let text = value.stringValue, let id = UUID(uuidString: text) else {
            return .failure(AgentRefusal(400, "invalid_approval_id", "\"approval_id\" must be an approval's id (a UUID) from GET /agents/v1/runs/<id>"))
        }
        return .success(id)
    }

    /// The run `idText` when the caller may see it: their own runs (sub-agents included), or any for an administrator.
    private func visibleRun(_ idText: String, caller: AgentCallerAccess) async throws -> AgentRunRecord? {
        guard let id = UUID(uuidString: idText), let run = try await context.agents.store.run(id) else { return nil }
        if caller.seesAll { return run }
        guard let subject = caller.caller.subject, run.caller.subject == subject else { return nil }
        return run
    }

    private static func notFound(_ idText: String) -> PluginResponse {
        .error(status: 404, code: "run_not_found", message: "no agent run \"\(String(idText.prefix(64)))\" that you may see in this portal")
    }
}
