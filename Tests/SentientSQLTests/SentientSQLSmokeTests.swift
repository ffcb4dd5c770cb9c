import Testing

@testable import SentientSQL

@Suite struct SentientSQLSmokeTests {
    @Test func moduleLoads() {
        #expect(Bool(true))
    }
}
