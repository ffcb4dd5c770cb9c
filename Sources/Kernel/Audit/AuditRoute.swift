import Foundation
import Hummingbird
import HummingbirdCore
import MeltyJSON
import NIOCore

/// `GET /v1/audit` (the audit log, filtered and paged by seq) and `GET /v1/audit/verify`
/// (the whole chain and its checkpoints checked now). Both need an admin at `aal1`.
struct AuditRoute: Sendable {
    let identity: AdminIdentity
    let database: SystemDatabase
    let keysDirectory: String

    /// Query parameters `GET /v1/audit` understands; any other is refused.
    static let parameters: Set<String> = ["action", "actor", "since", "until", "limit", "after"]

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let database = database
        let identity = identity
        let keysDirectory = keysDirectory
        router.get("/v1/audit") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let filter = try Filter(request.uri.queryParameters)
                let entries = try await database.withConnection { connection in
                    try await AuditChain.query(
                        on: connection, action: filter.action, actor: filter.actor, since: filter.since, until: filter.until,
                        limit: filter.limit, afterSeq: filter.after)
                }
                let page = Page(entries: entries, nextAfter: entries.count == filter.limit ? entries.last?.seq : nil)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                return Response(
                    status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                    body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(page))))
            }
        }
        router.get("/v1/audit/verify") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                // The instance's audit key when this kernel has it; otherwise each checkpoint
                // is checked against the key stored with it (reported as trusted_key: false).
                let trusted = try? AuditSigningKey.loadPublicKey(directory: keysDirectory)
                let result = try await database.withConnection { connection in
                    try await AuditChain.verify(on: connection, trustedPublicKey: trusted ?? nil)
                }
                return AdminHTTP.json(VerifyAnswer(result))
            }
        }
    }

    /// The parsed query of `GET /v1/audit`.
    struct Filter {
        var action: String?
        var actor: String?
        var since: Date?
        var until: Date?
        var limit = 100
        var after: Int64 = 0

        init(_ query: FlatDictionary<Substring, Substring>) throws {
            for (key, _) in query where !AuditRoute.parameters.contains(String(key)) {
                throw Self.invalid(String(key), "unknown query parameter \"\(key)\"; use \(AuditRoute.parameters.sorted().joined(separator: ", "))")
            }
            action = query["action"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            actor = query["actor"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            if let text = query["since"], !text.isEmpty {
                guard let date = TimeParameter.parse(String(text)) else {
                    throw Self.invalid("since", "since must be an RFC 3339 time (2026-01-31T09:30:00Z) or a date (2026-01-31)")
                }
                since = date
            }
            if let text = query["until"], !text.isEmpty {
                guard let date = TimeParameter.parse(String(text)) else {
                    throw Self.invalid("until", "until must be an RFC 3339 time (2026-01-31T09:30:00Z) or a date (2026-01-31)")
                }
                until = date
            }
            if let text = query["limit"], !text.isEmpty {
                guard let value = Int(text), (1...1000).contains(value) else { throw Self.invalid("limit", "limit must be a whole number from 1 to 1000") }
                limit = value
            }
            if let text = query["after"], !text.isEmpty {
                guard let value = Int64(text), value >= 0 else {
                    throw Self.invalid("after", "after must be a seq (a whole number, 0 or more): the next_after of the previous page")
                }
                after = value
            }
        }

        static func invalid(_ parameter: String, _ message: String) -> GatewayError {
            var error = GatewayError(status: 400, code: "invalid_parameter", message: message, hint: "see docs/admin-identity.md, GET /v1/audit")
            error.extraFields = ["parameter": parameter]
            return error
        }
    }

    /// `{entries: [...], next_after: seq or null}`.
    struct Page: Encodable {
        var entries: [AuditEntry]
        var nextAfter: Int64?

        enum CodingKeys: String, CodingKey {
            case entries
            case nextAfter = "next_after"
        }

        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(entries, forKey: .entries)
            try container.encode(nextAfter, forKey: .nextAfter)
        }
    }
}

extension AuditRoute {
    /// `GET /v1/audit/verify`: `{ok, entries, checkpoints_checked, head_seq, trusted_key,
    /// problem}`, `problem` being `{seq, description}` or `null`.
    struct VerifyAnswer: Encodable {
        struct Problem: Encodable, Sendable {
            var seq: Int64
            var description: String
        }

        var ok: Bool
        var entries: Int
        var checkpointsChecked: Int
        var headSeq: Int64
        var trustedKey: Bool
        @NullWhenAbsent var problem: Problem?

        init(_ result: AuditVerification) {
            ok = result.ok
            entries = result.entries
            checkpointsChecked = result.checkpointsChecked
            headSeq = result.headSeq
            trustedKey = result.trustedKey
            problem = result.problem.map { Problem(seq: $0.seq, description: $0.description) }
        }

        enum CodingKeys: String, CodingKey {
            case ok, entries
            case checkpointsChecked = "checkpoints_checked"
            case headSeq = "head_seq"
            case trustedKey = "trusted_key"
            case problem
        }
    }
}
