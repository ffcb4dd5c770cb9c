import Dispatch
import Testing

@testable import AgentCore

/// ``AgentLoop/within(milliseconds:_:)``: how the loop abandons a model or tool call when the
/// wall clock runs out or the run is cancelled.
@Suite struct AgentDeadlineTests {
    /// Two seconds that cancellation does not shorten, as a call through the host's egress.
    static func uncancellableWait() async {
        await withCheckedContinuation { continuation in DispatchQueue.global().asyncAfter(deadline: .now() + 2) { continuation.resume() } }
    }

    @Test func aCallInTimeGivesItsValue() async throws {
        let value = try await AgentLoop.within(milliseconds: 10_000) { 42 }
        #expect(value == 42)
    }

    @Test func aCallPastTheDeadlineGivesNilWithoutWaitingForIt() async throws {
        let value: Int? = try await AgentLoop.within(milliseconds: 20) {
            await Self.uncancellableWait()
            return 1
        }
        #expect(value == nil)
    }

    @Test func noTimeLeftMeansNoCall() async throws {
        let value: Int? = try await AgentLoop.within(milliseconds: 0) {
            Issue.record("called with no time left")
            return 1
        }
        #expect(value == nil)
    }

    @Test func aCallsErrorComesThrough() async {
        struct Refused: Error {}
        await #expect(throws: Refused.self) { _ = try await AgentLoop.within(milliseconds: 10_000) { () async throws -> Int in throw Refused() } }
    }

    @Test func cancellingTheRunAbandonsTheCall() async {
        let waiting = Task {
            try await AgentLoop.within(milliseconds: 600_000) { () async throws -> Int in
                await Self.uncancellableWait()
                return 1
            }
        }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
    }
}
