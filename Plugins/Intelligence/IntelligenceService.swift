import Foundation
import MeltyJSON
import MeltyPluginSDK

/// `intelligence.v1`, the JSON service other plugins call (the Database plugin's
/// `POST /sql/v1/diagnose`). Methods: `diagnose`.
enum IntelligenceService {
    static func call(context: IntelligencePortal, method: String, argument: [UInt8]) async throws -> [UInt8] {
        throw PluginError.notFound("intelligence.v1 has no method \"\(method)\"")
    }
}
