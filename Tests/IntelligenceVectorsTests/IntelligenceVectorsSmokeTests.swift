import Testing

@testable import IntelligenceVectors

@Suite struct IntelligenceVectorsSmokeTests {
    @Test func moduleLoads() {
        #expect(VectorIndexLibrary.version.contains("hnswlib"))
    }
}
