import Foundation
import Synchronization
import Testing

@testable import Kernel

@Suite("Pending plugin requests")
struct PendingRequestsTests {
    private static func response(_ status: Int) -> PluginResponse {
        PluginResponse(status: status, headers: [], body: Array("\(status)".utf8))
    }

    @Test("a callback gets an answer given later on the answering thread, and an answer already there at once; each once")
    func callbackAnswers() async throws {
        let pending = PendingRequests()
        defer { pending.stop() }
        let got = Mutex<[Int]>([])

        let early = pending.start(plugin: "p", timeout: 30) { token in _ = pending.complete(token, with: Self.response(201)) }
        #expect(early.early?.status == 201)

        let later = pending.start(plugin: "p", timeout: 30) { _ in }
        #expect(later.early == nil)
        pending.answer(later.token, plugin: "p", deadline: later.deadline) { response in got.withLock { $0.append(response.status) } }
        #expect(got.withLock { $0 }.isEmpty)
        let thread = Thread { _ = pending.complete(later.token, with: Self.response(202)) }
        thread.start()
        for _ in 0..<200 where got.withLock({ $0 }).isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        #expect(got.withLock { $0 } == [202])
        // A second answer for the same token is refused and reaches nobody.
        #expect(!pending.complete(later.token, with: Self.response(203)))

        // Answered between start and answer(then:): delivered at once, inside the call.
        let between = pending.start(plugin: "p", timeout: 30) { _ in }
        #expect(pending.complete(between.token, with: Self.response(204)))
        pending.answer(between.token, plugin: "p", deadline: between.deadline) { response in got.withLock { $0.append(response.status) } }
        #expect(got.withLock { $0 } == [202, 204])
        #expect(pending.count == 0)
    }

    @Test("a callback whose plugin never answers gets the 504 when the deadline passes, and the late answer is dropped")
    func callbackTimesOut() async throws {
        let pending = PendingRequests()
        defer { pending.stop() }
        let got = Mutex<[Int]>([])
        let started = pending.start(plugin: "slow", timeout: 0.3) { _ in }
        pending.answer(started.token, plugin: "slow", deadline: started.deadline) { response in got.withLock { $0.append(response.status) } }
        for _ in 0..<400 where got.withLock({ $0 }).isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        #expect(got.withLock { $0 } == [504])
        #expect(!pending.complete(started.token, with: Self.response(200)))
        #expect(got.withLock { $0 } == [504])
    }
}
