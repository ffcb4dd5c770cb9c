import Foundation
import Testing

@testable import Kernel

@Suite("The kernel's OpenAPI document", .serialized, .timeLimit(.minutes(3)))
struct KernelOpenAPITests {
    @Test("GET /v1/openapi.json describes exactly the routes the router serves (wildcards aside)")
    func documentMatchesRouter() async throws {
        let kernel = try await TestKernel.start("")
        defer { Task { await kernel.stop() } }
        let response = try await kernel.request(KernelOpenAPI.path)
        #expect(response.status == 200)
        #expect(response.headers.first(name: "content-type") == "application/json")
        let document = HTTP.json(response.body)
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = document["paths"] as? [String: [String: Any]] ?? [:]
        let documented = Set(paths.flatMap { path, item in item.keys.map { "\($0.uppercased()) \(path)" } })

        let registered = kernel.kernel.registeredRoutes
        // The portal routes are the plugins' to describe; everything else must be here.
        #expect(registered.contains { $0.path == "/p/**" })
        let served = Set(registered.filter { !$0.isWildcard }.map(\.description))
        #expect(served.contains("GET /v1/system/status") && served.contains("DELETE /v1/hub/portals/{name}"))
        #expect(served.subtracting(documented).sorted() == [], "served but not in the OpenAPI document: add them to KernelOpenAPI.paths")
        #expect(documented.subtracting(served).sorted() == [], "described but not served: remove them from KernelOpenAPI.paths")
        #expect(Set(KernelOpenAPI.operations) == documented)
        await kernel.stop()
    }

    @Test("every operation says who may call it, and admin operations name the bearer scheme")
    func operationsDeclareSecurity() throws {
        let document = KernelOpenAPI.document(version: SystemState.version)
        let schemes = (document["components"] as? [String: Any])?["securitySchemes"] as? [String: Any] ?? [:]
        #expect(schemes["adminBearer"] != nil)
        for (path, item) in KernelOpenAPI.paths {
            for (method, value) in item {
                let operation = value as? [String: Any] ?? [:]
                let security = operation["security"] as? [[String: Any]]
                #expect(security != nil, "\(method) \(path) has no security requirement")
                if path.hasPrefix("/v1/hub/") || path.hasPrefix("/v1/audit") || path == "/v1/admin/users" {
                    #expect(security?.contains { $0["adminBearer"] != nil } == true, "\(method) \(path) needs an admin token")
                }
            }
        }
        #expect(try JSONSerialization.jsonObject(with: Data(KernelOpenAPI.json(version: "1.2.3"))) is [String: Any])
    }
}
