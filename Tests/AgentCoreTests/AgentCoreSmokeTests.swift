import Testing

@testable import AgentCore

@Suite struct AgentCoreSmokeTests {
    @Test func moduleLoads() {
        #expect(Bool(true))
    }
}
