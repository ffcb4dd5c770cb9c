import Testing

@testable import RealtimeCore

@Suite struct RealtimeCoreSmokeTests {
    @Test func bothProtocolVersionsAreKnown() {
        #expect(RealtimeCore.protocolVersions == ["1.0.0", "2.0.0"])
    }
}
