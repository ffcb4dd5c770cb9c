import Foundation
import MeltyPostgres

/// Diagnoses a failed statement from the catalog and finds corrected statements, each
/// checked with EXPLAIN (planned, never executed): a rewrite that fails with a new error is
/// repaired again, a few levels deep, within a budget of checks.
public struct SQLDoctor: Sendable {
    /// The EXPLAIN check.
    public var check: SQLExplainCheck
    /// At most this many EXPLAIN checks per diagnosis.
    public var maxChecks: Int
    /// At most this many fixes are returned.
    public var maxFixes: Int
    /// Statements longer than this (scalars) are refused.
    public static let maxStatementLength = 100_000

    /// A doctor.
    public init(check: SQLExplainCheck = SQLExplainCheck(), maxChecks: Int = 40, maxFixes: Int = 3) {
        self.check = check
        self.maxChecks = maxChecks
        self.maxFixes = maxFixes
    }

    /// What a diagnosis found.
    public struct Outcome: Sendable {
        /// The diagnosis.
        public var diagnosis: SQLDiagnosis
        /// Checked fixes, best first.
        public var fixes: [SQLFix]
        /// The failure diagnosed (nil when the statement plans and no error was reported).
        public var failure: SQLFailure?
        /// The relations in scope, nearest first, for a model's prompt.
        public var schemaExcerpt: String
        /// The candidate reasons the catalog found (checked or not), for a model's prompt.
        public var hints: [String]
    }

    /// Refusals of a statement before anything runs.
    public enum InputError: Error, Equatable, Sendable {
        /// Empty after trimming.
        case empty
        /// Longer than ``SQLDoctor/maxStatementLength``.
        case tooLong
        /// Holds a NUL byte.
        case nulByte
        /// Holds several statements and no position says which failed.
        case severalStatements(Int)
    }

    /// The statement to diagnose: one statement (of a script, the one holding `position`),
    /// without trailing semicolons; `position` moved to be relative to it.
    public static func statement(from script: String, position: Int?) throws(InputError) -> (text: String, position: Int?) {
        if script.unicodeScalars.count > maxStatementLength { throw .tooLong }
        if script.utf8.contains(0) { throw .nulByte }
        let statements = SQLStatementShape.statements(script)
        guard !statements.isEmpty else { throw .empty }
        var chosen = statements[0]
        if statements.count > 1 {
            guard let position else { throw .severalStatements(statements.count) }
            guard let found = statements.last(where: { $0.offset < position }) else { throw .severalStatements(statements.count) }
            chosen = found
        }
        // Trim leading trivia so positions stay exact: count what is dropped.
        let leading = chosen.text.unicodeScalars.prefix { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }.count
        let text = String(String.UnicodeScalarView(chosen.text.unicodeScalars.dropFirst(leading)))
        let shifted = position.map { $0 - chosen.offset - leading }.flatMap { $0 >= 1 ? $0 : nil }
        return (text.trimmingCharacters(in: .whitespacesAndNewlines), shifted)
    }

    /// Diagnoses `statement` (one statement) on `connection` (as the role it ran as).
    /// `reported` is the error its run returned, if any: needed for errors only execution
    /// shows (constraints, row-level security); errors EXPLAIN finds take precedence.
    public func diagnose(statement: String, reported: SQLFailure?, role: String? = nil, on connection: PostgresConnection) async throws -> Outcome {
        let shape = SQLStatementShape(statement)
        // A misspelt leading keyword (`SELEC`) is planned too, to get its syntax error.
        let misspelt = shape.leadingKeyword.map { word in
            NameDistance.nearest(to: word, in: Array(SQLExplainCheck.explainable)).contains { $0.distance <= 2 && word.count >= 4 }
        }
        let explainable = SQLExplainCheck.canExplain(shape) || misspelt == true
        var failure: SQLFailure?
        if explainable { failure = try await check.failure(of: statement, on: connection) }
        if failure == nil || (failure?.sqlState == "42601" && !explainable) { failure = reported }
        if !explainable, failure == nil {
            return Outcome(
                diagnosis: SQLDiagnosis(
                    category: "not_explainable", sqlState: "", message: "",
                    explanation:
                        "Only SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES and WITH statements can be checked with EXPLAIN; send the error the statement returned as `error`."),
                fixes: [], failure: nil, schemaExcerpt: "", hints: [])
        }
        let catalog = try await SQLCatalog.load(on: connection)
        let excerpt = Self.excerpt(catalog, shape)
        guard let failure else {
            return Outcome(
                diagnosis: SQLDiagnosis(
                    category: "no_error", sqlState: "", message: "",
                    explanation:
                        "The statement plans without error. Errors that only show when it runs (constraints, row-level security, bad values in rows) need the error the run returned: send it as `error`."
                ),
                fixes: [], failure: nil, schemaExcerpt: excerpt, hints: [])
        }
        let planner = SQLFixPlanner(catalog: catalog)
        let plan = try await planner.plan(failure, shape: shape, role: role, on: connection)
        var search = Search(budget: maxChecks, seen: [statement])
        // Candidates are checked even when the original cannot be explained (a misspelt
        // leading keyword): a candidate that is not a query fails its check and is dropped.
        try await explore(plan.candidates, reasons: [], depth: 0, planner: planner, role: role, on: connection, search: &search)
        let diagnosis = SQLDiagnosis(category: plan.category, sqlState: failure.sqlState, message: failure.message, explanation: plan.explanation, remedies: plan.remedies)
        return Outcome(diagnosis: diagnosis, fixes: search.fixes, failure: failure, schemaExcerpt: excerpt, hints: plan.candidates.map(\.reason))
    }

    private struct Search {
        var budget: Int
        var seen: Set<String>
        var fixes: [SQLFix] = []
        /// No new check starts after this (the connection is held for the whole search).
        var deadline = ContinuousClock.now + .seconds(15)
    }

    private func explore(
        _ candidates: [SQLFixPlan.Candidate], reasons: [String], depth: Int, planner: SQLFixPlanner, role: String?, on connection: PostgresConnection,
        search: inout Search
    ) async throws {
        for candidate in candidates {
            guard search.budget > 0, search.fixes.count < maxFixes, ContinuousClock.now < search.deadline else { return }
            guard search.seen.insert(candidate.statement).inserted else { continue }
            search.budget -= 1
            let reasonsSoFar = reasons + [candidate.reason]
            if let next = try await check.failure(of: candidate.statement, on: connection) {
                guard depth < 3 else { continue }
                let shape = SQLStatementShape(candidate.statement)
                let plan = try await planner.plan(next, shape: shape, role: role, on: connection)
                try await explore(plan.candidates, reasons: reasonsSoFar, depth: depth + 1, planner: planner, role: role, on: connection, search: &search)
            } else {
                search.fixes.append(SQLFix(statement: candidate.statement, reason: reasonsSoFar.joined(separator: "; ")))
            }
        }
    }

    /// Checks statements from elsewhere (a model): each must be one explainable statement
    /// that plans; the rest are dropped with a reason.
    public func checkProposals(
        _ proposals: [(statement: String, reason: String)], original: String, on connection: PostgresConnection
    ) async throws -> (
        fixes: [SQLFix], dropped: [(statement: String, reason: String)]
    ) {
        var fixes: [SQLFix] = []
        var dropped: [(String, String)] = []
        for proposal in proposals.prefix(5) {
            let text: String
            do {
                text = try Self.statement(from: proposal.statement, position: nil).text
            } catch {
                dropped.append((String(proposal.statement.prefix(200)), "not one statement (\(error))"))
                continue
            }
            let shape = SQLStatementShape(text)
            guard SQLExplainCheck.canExplain(shape) else {
                dropped.append((String(text.prefix(200)), "only SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES and WITH can be checked"))
                continue
            }
            if text == original {
                dropped.append((String(text.prefix(200)), "the same as the failing statement"))
                continue
            }
            if let failure = try await check.failure(of: text, on: connection) {
                dropped.append((String(text.prefix(200)), "EXPLAIN failed: \(failure.message) (SQLSTATE \(failure.sqlState))"))
            } else if !fixes.contains(where: { $0.statement == text }) {
                fixes.append(SQLFix(statement: text, reason: proposal.reason, source: "model"))
            }
        }
        return (fixes, dropped)
    }

    /// The relations the statement names first, then the rest of the search path.
    static func excerpt(_ catalog: SQLCatalog, _ shape: SQLStatementShape) -> String {
        var chosen = catalog.scope(of: shape).map(\.relation)
        for relation in catalog.relations where catalog.onPath(relation.schema) && !chosen.contains(relation) { chosen.append(relation) }
        return SQLCatalog.excerpt(chosen, limit: 20)
    }
}
