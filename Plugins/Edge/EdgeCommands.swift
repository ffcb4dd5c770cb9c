import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK

/// `meltybase edge <command>` (and its alias `meltybase functions <command>`): deploy and
/// manage a portal's functions from a terminal, against the same store the kernels read.
/// A running kernel picks a new active version up within a second.
enum EdgeCommands {
    static var all: [PluginCommandDefinition] { [deploy, list, versions, rollback, delete, logs] }

    static let deploy = PluginCommandDefinition(
        name: "deploy",
        summary: "Check, boot and store a function folder as the portal's new active version.",
        help: """
            USAGE: meltybase functions deploy --portal <portal> <name> <folder> [--no-verify-jwt]

            Deploys the TypeScript or JavaScript module in <folder> (index.ts, index.js, main.ts ... or the
            "entrypoint" of its function.json) with its local imports as function <name> of <portal>.

            The folder is type-checked offline (remote https:, npm: and jsr: imports are refused: vendor them
            into the folder), booted once in a sandboxed worker (a module without a handler is refused), and
            only then stored as a new version, which becomes the active one. On a refusal nothing is stored;
            each error names its file and line.

            function.json (optional): {"entrypoint": "index.ts", "verify_jwt": true, "allow_net": ["api.example.com"],
            "secrets": ["STRIPE_KEY"], "env": {"MODE": "live"}, "limits": {"cpu_hard_ms": 2000, "memory_mb": 256}}

            OPTIONS:
              --portal <portal>   The portal.
              --no-verify-jwt     Let callers without a JWT invoke it (overrides function.json).
            """,
        options: [.value("portal"), .flag("no-verify-jwt")]
    ) { arguments, context in
        let runtime = try started()
        let portal = try arguments.required("portal")
        guard arguments.positional.count == 2 else {
            throw CommandUsageError("expected <name> <folder> after the options, e.g. meltybase functions deploy --portal shop hello ./hello")
        }
        let name = try FunctionName(arguments.positional[0])
        var bundle: FunctionBundle
        do {
            bundle = try FunctionBundle.load(directory: arguments.positional[1])
            if arguments.flag("no-verify-jwt") {
                var manifest = bundle.manifest
                manifest.verifyJWT = false
                bundle = try FunctionBundle(files: bundle.files, manifest: manifest)
            }
            let deployed = try await FunctionDeployer(runtime: runtime).deploy(
                portal: portal, name: name, bundle: bundle, createdBy: "cli:\(NSUserName())", functions: nil)
            try context.host.auditBlocking(
                action: "edge.function.deploy", target: "function:\(name)",
                details: ["portal": .string(portal), "version": .number(Double(deployed.version)), "sha256": .string(deployed.sha256)])
            context.output.print("deployed \(name) version \(deployed.version) to portal \(portal) (sha256 \(deployed.sha256.prefix(16)))")
            context.output.print("invoke: POST /p/\(portal)/functions/v1/\(name)")
            return 0
        } catch let rejection as EdgeDeployRejection {
            context.output.printError("Error: \(name) was not deployed (nothing was stored):")
            for error in rejection.errors { context.output.printError("  \(error.description)") }
            return 1
        }
    }

    static let list = PluginCommandDefinition(
        name: "list", summary: "List a portal's functions and their active versions.",
        help: "USAGE: meltybase functions list --portal <portal>", options: [.value("portal")]
    ) { arguments, context in
        let runtime = try started()
        let portal = try arguments.required("portal")
        let records = try await runtime.store.functions(portal: portal)
        if records.isEmpty { context.output.print("portal \(portal) has no functions") }
        for record in records {
            context.output.print("\(record.name)\tversion \(record.activeVersion)\tverify_jwt \(record.manifest.verifyJWT)\tupdated \(record.updatedAt)")
        }
        return 0
    }

    static let versions = PluginCommandDefinition(
        name: "versions", summary: "List the stored versions of a function.",
        help: "USAGE: meltybase functions versions --portal <portal> <name>", options: [.value("portal")]
    ) { arguments, context in
        let runtime = try started()
        let (portal, name) = try portalAndName(arguments)
        guard let record = try await runtime.store.function(portal: portal, name: name) else { return notFound(context, portal, name) }
        for version in try await runtime.store.versions(portal: portal, name: name) {
            let marker = version.version == record.activeVersion ? "*" : " "
            context.output.print("\(marker) v\(version.version)\t\(version.sha256.prefix(16))\t\(version.size) bytes\t\(version.createdAt)\t\(version.createdBy)")
        }
        return 0
    }

    static let rollback = PluginCommandDefinition(
        name: "rollback", summary: "Make an earlier version of a function the active one.",
        help: """
            USAGE: meltybase functions rollback --portal <portal> <name> [--version <n>]

            Without --version: the version before the active one.
            """,
        options: [.value("portal"), .value("version")]
    ) { arguments, context in
        let runtime = try started()
        let (portal, name) = try portalAndName(arguments)
        let wanted = arguments.value("version") == nil ? nil : try arguments.integer("version", default: 1, in: 1...Int(Int32.max))
        let version: Int
        do {
            version = try await runtime.store.rollback(portal: portal, name: name, to: wanted).activeVersion
        } catch {
            context.output.printError("Error: \(error)")
            return 1
        }
        try context.host.auditBlocking(
            action: "edge.function.rollback", target: "function:\(name)", details: ["portal": .string(portal), "version": .number(Double(version))])
        context.output.print("\(name) now runs version \(version) in portal \(portal)")
        return 0
    }

    static let delete = PluginCommandDefinition(
        name: "delete", summary: "Delete a function, its versions and its logs.",
        help: "USAGE: meltybase functions delete --portal <portal> <name>", options: [.value("portal")]
    ) { arguments, context in
        let runtime = try started()
        let (portal, name) = try portalAndName(arguments)
        do {
            try await runtime.store.delete(portal: portal, name: name)
        } catch {
            if case .functionNotFound? = error as? EdgeStoreError { return notFound(context, portal, name) }
            throw error
        }
        try context.host.auditBlocking(action: "edge.function.delete", target: "function:\(name)", details: ["portal": .string(portal)])
        context.output.print("deleted \(name) from portal \(portal)")
        return 0
    }

    static let logs = PluginCommandDefinition(
        name: "logs", summary: "Show a function's log lines (console output, errors, limits); -f follows.",
        help: """
            USAGE: meltybase functions logs --portal <portal> <name> [--limit <n>] [--follow]

            Prints the newest <n> lines (default 100), oldest first: time, request id, level, message.
            --follow keeps printing new lines until interrupted.
            """,
        options: [.value("portal"), .value("limit"), .flag("follow"), .flag("f")]
    ) { arguments, context in
        let runtime = try started()
        let (portal, name) = try portalAndName(arguments)
        let limit = try arguments.integer("limit", default: 100, in: 1...1000)
        guard try await runtime.store.function(portal: portal, name: name) != nil else { return notFound(context, portal, name) }
        var after = Int64(0)
        repeat {
            let lines = try await runtime.store.logs(portal: portal, name: name, after: after, limit: 1000)
            for line in lines { context.output.print(line.text) }
            if !(arguments.flag("follow") || arguments.flag("f")), lines.count < 1000 { break }
            after = lines.last?.id ?? after
            if arguments.flag("follow") || arguments.flag("f") { try await Task.sleep(for: .milliseconds(500)) }
        } while arguments.flag("follow") || arguments.flag("f")
        return 0
    }

    private static func started() throws -> EdgeRuntime {
        guard let runtime = EdgePlugin.runtime else { throw PluginError.unavailable("the Edge plugin did not start") }
        return runtime
    }

    private static func portalAndName(_ arguments: CommandArguments) throws -> (String, FunctionName) {
        let portal = try arguments.required("portal")
        guard arguments.positional.count == 1 else { throw CommandUsageError("expected the function's <name> after the options") }
        return (portal, try FunctionName(arguments.positional[0]))
    }

    private static func notFound(_ context: CommandContext, _ portal: String, _ name: FunctionName) -> Int32 {
        context.output.printError("Error: portal \(portal) has no function \(name)")
        return 1
    }
}
