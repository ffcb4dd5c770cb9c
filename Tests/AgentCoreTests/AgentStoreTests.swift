import Foundation
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import AgentCore

@Suite(.serialized) struct AgentStoreTests {
    let caller = AgentCaller(role: "authenticated", subject: "user-1", claimsJSON: #"{"role":"authenticated","sub":"user-1"}"#)
    let budget = AgentBudget(steps: 10, tokens: 1_000, wallClockMilliseconds: 60_000)

    /// A store on a fresh database with the agents' tables.
    func freshStore() async throws -> AgentStore {
        let conninfo = try TestServices.freshDatabase()
        let pool = PostgresPool(conninfo: conninfo, size: 4, maxWaiting: 100, loop: TestServices.loop)
        try await pool.run { connection in
            _ = try await connection.execute("CREATE SCHEMA IF NOT EXISTS intelligence")
            _ = try await connection.execute(AgentStore.schema)
            _ = try await connection.execute(AgentStore.schema)  // idempotent
        }
        return AgentStore(pool: pool)
    }

    @Test func aRunRoundTripsWithHostileText() async throws {
        let store = try await freshStore()
        let goal = "count'); DROP TABLE x; -- \"quoted\" \\ back ✓ 𝄞 {braces,commas}"
        let tools = ["sql_read", "a,b", "quote\"d", "back\\slash", ""]
        let created = try await store.create(.init(goal: goal, tools: tools, budget: budget, caller: caller), owner: "me", leaseSeconds: 10)
        let read = try #require(try await store.run(created.id))
        #expect(read.goal == goal && read.tools == tools && read.status == .queued)
        #expect(read.budget == budget && read.usage == AgentUsage())
        #expect(read.caller == caller && read.rootID == read.id && read.parentID == nil)
        #expect(try await store.run(UUID()) == nil)
    }

    @Test func stepsGetConsecutiveNumbersEvenWhenAppendedConcurrently() async throws {
        let store = try await freshStore()
        let run = try await store.create(.init(goal: "g", tools: [], budget: budget, caller: caller), owner: "me", leaseSeconds: 10)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask { try await store.append(run.id, kind: .observation, contentJSON: #"{"n":\#(index)}"#) }
            }
            try await group.waitForAll()
        }
        let steps = try await store.steps(of: [run.id], limit: 100)
        #expect(steps.map(\.seq).sorted() == Array(1...20))
        #expect(try await store.steps(of: [run.id], after: 18, limit: 100).map(\.seq).sorted() == [19, 20])
    }

    @Test func aFinishedRunStaysFinished() async throws {
        let store = try await freshStore()
        let run = try await store.create(.init(goal: "g", tools: [], budget: budget, caller: caller), owner: "me", leaseSeconds: 10)
        #expect(try await store.start(run.id))
        #expect(try await store.finish(run.id, status: .succeeded, reason: nil, answer: "42", usage: AgentUsage(steps: 2, tokens: 30)))
        #expect(try await store.finish(run.id, status: .failed, reason: "late", answer: nil, usage: AgentUsage()) == false)
        #expect(try await store.start(run.id) == false)
        let read = try #require(try await store.run(run.id))
        #expect(read.status == .succeeded && read.answer == "42" && read.usage == AgentUsage(steps: 2, tokens: 30) && read.finishedAt != nil)
    }

    @Test func cancelTakesTheWholeSubtreeButNotFinishedChildren() async throws {
        let store = try await freshStore()
        let root = try await store.create(.init(goal: "root", tools: [], budget: budget, caller: caller), owner: "me", leaseSeconds: 10)
        let child = try await store.create(
            .init(goal: "child", tools: [], budget: budget, caller: caller, parent: (root.id, root.id, "c1")), owner: "me", leaseSeconds: 10)
        let done = try await store.create(
            .init(goal: "done", tools: [], budget: budget, caller: caller, parent: (root.id, root.id, "c2")), owner: "me", leaseSeconds: 10)
        let grandchild = try await store.create(
            .init(goal: "grandchild", tools: [], budget: budget, caller: caller, parent: (child.id, root.id, "c3")), owner: "me", leaseSeconds: 10)
        try await store.finish(done.id, status: .succeeded, reason: nil, answer: "ok", usage: AgentUsage())
        let cancelled = try await store.cancel(root.id, reason: "cancelled by test")
        #expect(Set(cancelled) == [root.id, child.id, grandchild.id])
        #expect(try await store.run(done.id)?.status == .succeeded)
        #expect(try await store.run(grandchild.id)?.reason == "cancelled by test")
        #expect(try await store.tree(of: root.id, limit: 10).map(\.id).count == 4)
        #expect(try await store.child(of: root.id, callID: "c2")?.id == done.id)
    }

    @Test func runsOfADeadOwnerAreClaimedOnceTheirLeaseRunsOut() async throws {
        let store = try await freshStore()
        let run = try await store.create(.init(goal: "g", tools: [], budget: budget, caller: caller), owner: "dead", leaseSeconds: 3)
        #expect(try await store.start(run.id))
        #expect(try await store.claimOrphans(owner: "new", leaseSeconds: 10, limit: 10).isEmpty)
        #expect(try await store.foreignLeases(owner: "new") == 1)
        try await store.pool.run { _ = try await $0.execute("UPDATE intelligence.agent_runs SET lease_until = now() - interval '1 second'") }
        #expect(try await store.claimOrphans(owner: "new", leaseSeconds: 10, limit: 10) == [run.id])
        #expect(try await store.claimOrphans(owner: "other", leaseSeconds: 10, limit: 10).isEmpty)
        #expect(try await store.foreignLeases(owner: "new") == 0)
    }

    @Test func aWaitingRunIsClaimedOnlyOnceItsApprovalIsDecided() async throws {
        let store = try await freshStore()
        let run = try await store.create(.init(goal: "g", tools: ["sql_write"], budget: budget, caller: caller), owner: "me", leaseSeconds: 10)
        #expect(try await store.start(run.id))
        let approval = try await store.requestApproval(run: run.id, callID: "w1", statement: "delete from notes")
        #expect(try await store.requestApproval(run: run.id, callID: "w1", statement: "other").id == approval.id)
        try await store.wait(run.id, reason: "waiting", usage: AgentUsage(steps: 1))
        #expect(try await store.run(run.id)?.status == .waitingApproval)
        #expect(try await store.claimOrphans(owner: "me", leaseSeconds: 10, limit: 10).isEmpty)
        let decided = try #require(try await store.decide(runs: [run.id], approve: true, by: "service_role"))
        #expect(decided.status == .approved && decided.decidedBy == "service_role")
        #expect(try await store.decide(runs: [run.id], approve: false, by: "service_role") == nil)
        #expect(try await store.claimOrphans(owner: "me", leaseSeconds: 10, limit: 10) == [run.id])
        #expect(try await store.moveApproval(approval.id, from: .approved, to: .executing))
        #expect(try await store.moveApproval(approval.id, from: .approved, to: .executing) == false)
        #expect(try await store.moveApproval(approval.id, from: .executing, to: .executed, resultJSON: #"{"command":"DELETE 3"}"#))
        #expect(try await store.approval(run: run.id, callID: "w1")?.resultJSON == #"{"command": "DELETE 3"}"#)
    }

    @Test func memoriesAreKeptPerUserAndPerPortal() async throws {
        let store = try await freshStore()
        try await store.remember(subject: "user-1", key: "colour", text: "teal")
        try await store.remember(subject: "user-1", key: "colour", text: "green")
        try await store.remember(subject: "", key: "office", text: "Basel")
        try await store.remember(subject: "user-2", key: "colour", text: "red")
        let mine = try await store.recall(subjects: ["user-1", ""], query: "", limit: 10)
        #expect(Set(mine.map(\.text)) == ["green", "Basel"])
        #expect(try await store.recall(subjects: ["user-1", ""], query: "COLOUR", limit: 10).map(\.text) == ["green"])
        #expect(try await store.recall(subjects: ["user-1"], query: "%", limit: 10).isEmpty)
    }

    @Test func arrayLiteralsRoundTrip() {
        for values in [[], ["a"], ["a,b", "c\"d", "e\\f", "", "{x}", "NULL"]] as [[String]] {
            #expect(AgentStore.parseArray(AgentStore.arrayLiteral(values)) == values)
        }
    }
}
