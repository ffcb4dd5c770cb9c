import Foundation
import MeltyTestServices
import NIOConcurrencyHelpers

/// The plain-C plugins (the example and the deliberately broken ones), compiled by the
/// test suite itself with `scripts/build-c-plugins.sh`, and the Swift example plugin
/// SwiftPM built next to the test binary.
enum TestPlugins {
    private static let built = NIOLockedValueBox<String?>(nil)

    /// Folder holding `libecho_c.so` and `broken/lib*.so`.
    static func directory() throws -> String {
        try built.withLockedValue { directory in
            if let directory { return directory }
            let output = TestServices.repositoryRoot + "/.build/test-plugins"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [TestServices.repositoryRoot + "/scripts/build-c-plugins.sh", output, "--with-broken"]
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw TestFailure("scripts/build-c-plugins.sh failed (\(process.terminationStatus))") }
            directory = output
            return output
        }
    }

    /// The C example plugin.
    static func echoC() throws -> String { try directory() + "/libecho_c.so" }

    /// The third-party fixture (Tests/Fixtures/ThirdPartyPlugin, ABI 1.5 page, command, health).
    static func acmeReport() throws -> String { try directory() + "/libacme_report.so" }

    /// A broken plugin by fixture name (`wrong_major`).
    static func broken(_ name: String) throws -> String { try directory() + "/broken/lib\(name).so" }

    /// The Swift example plugin built by SwiftPM beside the test bundle.
    static var echoSwift: String { productsDirectory + "/libEchoSwiftPlugin.so" }

    /// The Vault plugin built by SwiftPM beside the test bundle.
    static var vault: String { productsDirectory + "/libVaultPlugin.so" }

    /// SwiftPM's products folder (`.build/debug`).
    static var productsDirectory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("libEchoSwiftPlugin.so").path) { return url.path }
        }
        return TestServices.repositoryRoot + "/.build/debug"
    }

    /// The `meltybase` executable built beside the tests.
    static var meltybaseBinary: String { productsDirectory + "/meltybase" }
}

/// A test precondition that did not hold.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
