import Foundation
import MeltyABIBytes
import MeltyJSON
import MeltyPluginABI

/// A command a Swift plugin adds to the command line: `meltybase <plugin> <name> [args]`
/// (ABI 1.5). Declare them in ``PortalPlugin/commands``.
///
/// ```swift
/// static var commands: [PluginCommandDefinition] {
///     [PluginCommandDefinition(name: "greet", summary: "Say hello.", help: "USAGE: meltybase my-plugin greet --name NAME",
///                              options: [.value("name")]) { arguments, context in
///         context.output.print("Hello, \(try arguments.required("name"))!")
///         return 0
///     }]
/// }
/// ```
public struct PluginCommandDefinition: Sendable {
    /// `[a-z0-9-]`, unique within the plugin.
    public var name: String
    /// One line for `meltybase <plugin> --help`.
    public var summary: String
    /// Full usage text for `meltybase <plugin> <name> --help`.
    public var help: String
    /// The options the command takes; anything else is a usage error (exit status 2).
    public var options: [CommandOption]
    /// Runs the command; returns the exit status (0 success, 1 failure). A thrown
    /// ``CommandUsageError`` exits with 2, any other error prints `Error: <error>` and exits with 1.
    public var run: @Sendable (CommandArguments, CommandContext) async throws -> Int32

    /// A command `name` taking `options`.
    public init(
        name: String, summary: String, help: String, options: [CommandOption] = [],
        run: @escaping @Sendable (CommandArguments, CommandContext) async throws -> Int32
    ) {
        self.name = name
        self.summary = summary
        self.help = help
        self.options = options
        self.run = run
    }
}

/// One option of a command, written `--<name>` on the command line.
public enum CommandOption: Sendable, Equatable {
    /// `--name VALUE` (or `--name=VALUE`); the last one given wins.
    case value(String)
    /// `--name A B C`: every argument up to the next option.
    case list(String)
    /// `--name`, present or not.
    case flag(String)

    var name: String {
        switch self {
        case .value(let name), .list(let name), .flag(let name): name
        }
    }
}

/// A usage error: printed as `Error: <message>` on standard error, exit status 2.
public struct CommandUsageError: Error, CustomStringConvertible, Sendable {
    /// What is wrong with the arguments.
    public let description: String
    /// A usage error saying `message`.
    public init(_ message: String) { description = message }
}

/// A command's arguments, parsed against its ``CommandOption``s.
public struct CommandArguments: Sendable {
    /// The arguments as given (without `--config`).
    public let raw: [String]
    /// Arguments that are not options or their values.
    public let positional: [String]
    private let values: [String: [String]]
    private let flags: Set<String>

    /// Parses `raw` for `options`; throws ``CommandUsageError`` for an unknown option or a missing value.
    public init(_ raw: [String], options: [CommandOption]) throws {
        self.raw = raw
        var values: [String: [String]] = [:]
        var flags: Set<String> = []
        var positional: [String] = []
        var index = 0
        while index < raw.count {
            let argument = raw[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                positional.append(argument)
                continue
            }
            var name = String(argument.dropFirst(2))
            var inline: String? = nil
            if let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = options.first(where: { $0.name == name }) else {
                let known = options.map { "--\($0.name)" }
                throw CommandUsageError("unknown option --\(name)\(known.isEmpty ? "; this command takes no options" : "; options: \(known.joined(separator: ", "))")")
            }
            switch option {
            case .flag:
                guard inline == nil else { throw CommandUsageError("--\(name) takes no value") }
                flags.insert(name)
            case .value:
                if let inline {
                    values[name] = [inline]
                } else {
                    guard index < raw.count, !raw[index].hasPrefix("--") else { throw CommandUsageError("--\(name) needs a value") }
                    values[name] = [raw[index]]
                    index += 1
                }
            case .list:
                var list = inline.map { [$0] } ?? []
                while index < raw.count, !raw[index].hasPrefix("--") {
                    list.append(raw[index])
                    index += 1
                }
                guard !list.isEmpty else { throw CommandUsageError("--\(name) needs at least one value") }
                values[name] = list
            }
        }
        self.values = values
        self.flags = flags
        self.positional = positional
    }

    /// The value of `--name`, or nil when not given.
    public func value(_ name: String) -> String? { values[name]?.last }
    /// The value of `--name`; a usage error when missing.
    public func required(_ name: String) throws -> String {
        guard let value = value(name) else { throw CommandUsageError("--\(name) is required") }
        return value
    }
    /// The values of a ``CommandOption/list(_:)`` option, or nil when not given.
    public func list(_ name: String) -> [String]? { values[name] }
    /// Whether the flag `--name` was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }
    /// `--name` as an integer in `range`, `fallback` when not given; a usage error otherwise.
    public func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        guard let text = value(name) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw CommandUsageError("--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), found \"\(text)\"")
        }
        return number
    }
    /// `--name` as a number, `fallback` when not given; a usage error otherwise.
    public func number(_ name: String, default fallback: Double) throws -> Double {
        guard let text = value(name) else { return fallback }
        guard let number = Double(text), number.isFinite else { throw CommandUsageError("--\(name) must be a number, found \"\(text)\"") }
        return number
    }
}

/// Where a command writes: the `meltybase` process's standard output and error.
public struct CommandOutput: Sendable {
    let write: @Sendable (Bool, [UInt8]) -> Void

    /// Writes `line` and a newline to standard output.
    public func print(_ line: String) { write(false, Array((line + "\n").utf8)) }
    /// Writes `line` and a newline to standard error.
    public func printError(_ line: String) { write(true, Array((line + "\n").utf8)) }
    /// Writes bytes to standard output as they are.
    public func write(_ bytes: [UInt8]) { write(false, bytes) }
}

/// What a command gets besides its arguments.
public struct CommandContext: Sendable {
    /// Standard output and error.
    public let output: CommandOutput
    /// The kernel's services in the CLI process: audit (committed per call), logging,
    /// `postgresConninfo()` (the system database). There are no portals.
    public let host: PluginHostServices
    /// The plugin's `[plugins.<name>.config]` table as JSON.
    public let configJSON: [UInt8]

    /// The config table (empty when it is not an object; the plugin's `init` already
    /// refused a config it cannot use).
    public var config: PluginConfig { (try? PluginConfig(json: configJSON)) ?? PluginConfig() }
}

/// A plugin's health as it reports it (ABI 1.5 `health`).
public struct PluginHealthReport: Sendable {
    /// `ok`, `degraded` or `failing`.
    public enum Status: String, Sendable {
        case ok, degraded, failing
    }

    /// The status.
    public var status: Status
    /// One line for the operator.
    public var message: String

    /// A report of `status` with `message`.
    public init(_ status: Status, _ message: String = "") {
        self.status = status
        self.message = message
    }

    private struct Body: Encodable {
        let status: String
        let message: String
    }

    var json: [UInt8] {
        (try? JSONValue.serialize(Body(status: status.rawValue, message: message))) ?? Array("{\"status\":\"failing\"}".utf8)
    }
}

/// A Studio page a Swift plugin adds (ABI 1.5); see ``PortalPlugin/studio``.
public struct StudioPageDefinition: Sendable {
    /// `[a-z0-9_-]`: the page is `/dashboard/plugins/<plugin>/<id>`.
    public var id: String
    /// Navigation label.
    public var title: String
    /// Module path inside the Studio folder (`database.js`).
    public var module: String

    /// A page `id` titled `title`, rendered by `module`.
    public init(id: String, title: String, module: String) {
        self.id = id
        self.title = title
        self.module = module
    }
}

/// A Swift plugin's Studio folder and pages (ABI 1.5).
public struct StudioDefinition: Sendable {
    /// The folder relative to the folder of the plugin's library. For a SwiftPM resource
    /// `resources: [.copy("Studio")]` of target T in package P that is
    /// `"P_T.resources/Studio"` (SwiftPM puts the bundle beside the library).
    public var directory: String
    /// The pages, in navigation order.
    public var pages: [StudioPageDefinition]

    /// Pages served from `directory`.
    public init(directory: String, pages: [StudioPageDefinition]) {
        self.directory = directory
        self.pages = pages
    }
}

/// The C side of commands, pages and health for ``PluginExport``.
enum PluginExtrasBridge {
    /// An immortal C list of `pages`, or NULL.
    static func pageList(_ pages: [StudioPageDefinition]) -> UnsafePointer<UnsafePointer<mb_studio_page>?>? {
        immortalList(pages) { page in
            mb_studio_page(
                struct_size: MemoryLayout<mb_studio_page>.size, id: UnsafePointer(strdup(page.id)),
                title: UnsafePointer(strdup(page.title)), module: UnsafePointer(strdup(page.module)))
        }
    }

    /// An immortal C list of `commands`, or NULL.
    static func commandList(_ commands: [PluginCommandDefinition]) -> UnsafePointer<UnsafePointer<mb_cli_command>?>? {
        immortalList(commands) { command in
            mb_cli_command(
                struct_size: MemoryLayout<mb_cli_command>.size, name: UnsafePointer(strdup(command.name)),
                summary: UnsafePointer(strdup(command.summary)), help: UnsafePointer(strdup(command.help)))
        }
    }

    /// A NULL-terminated C list of one immortal `Entry` per item (the descriptor's lists are
    /// read for the life of the process and never freed), or NULL for no items.
    private static func immortalList<Item, Entry>(_ items: [Item], _ entry: (Item) -> Entry) -> UnsafePointer<UnsafePointer<Entry>?>? {
        guard !items.isEmpty else { return nil }
        let list = UnsafeMutablePointer<UnsafePointer<Entry>?>.allocate(capacity: items.count + 1)
        for (index, item) in items.enumerated() {
            let element = UnsafeMutablePointer<Entry>.allocate(capacity: 1)
            element.initialize(to: entry(item))
            (list + index).initialize(to: UnsafePointer(element))
        }
        (list + items.count).initialize(to: nil)
        return UnsafePointer(list)
    }

    /// Runs `body` to completion from a synchronous C callback (a blocking-pool thread).
    static func wait<T: Sendable>(fallback: T, _ body: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox<T>()
        Task {
            result.set(await body())
            done.signal()
        }
        done.wait()
        return result.get() ?? fallback
    }

    /// Holds a result across threads; written once before the semaphore is signalled.
    final class ResultBox<T: Sendable>: @unchecked Sendable {  // Sendable: written once, read after the signal (happens-before via the semaphore).
        private var value: T?
        func set(_ value: T) { self.value = value }
        func get() -> T? { value }
    }
}

/// `cli_run` of every Swift plugin.
func sdkCLIRun(
    _ context: UnsafePointer<mb_host_cli_context>?, _ command: UnsafePointer<CChar>?, _ argc: Int32,
    _ argv: UnsafePointer<UnsafePointer<CChar>?>?
) -> Int32 {
    guard let context, let command, let type = PluginExport.pluginType, let host = PluginExport.host else { return 1 }
    let name = String(cString: command)
    var arguments: [String] = []
    for index in 0..<Int(max(argc, 0)) {
        if let pointer = argv?[index] { arguments.append(String(cString: pointer)) }
    }
    let contextAddress = UInt(bitPattern: context)
    let output = CommandOutput { toError, bytes in
        guard let context = UnsafePointer<mb_host_cli_context>(bitPattern: contextAddress) else { return }
        withPluginBytes(bytes) { payload in
            if toError { context.pointee.write_err(context, payload) } else { context.pointee.write_out(context, payload) }
        }
    }
    guard let definition = type.commands.first(where: { $0.name == name }) else {
        output.printError("Error: no command \"\(name)\"")
        return 2
    }
    let commandContext = CommandContext(output: output, host: host, configJSON: copyBytes(context.pointee.config_json))
    let parsed: CommandArguments
    do {
        parsed = try CommandArguments(arguments, options: definition.options)
    } catch {
        output.printError("Error: \(error)")
        return 2
    }
    return PluginExtrasBridge.wait(fallback: 1) {
        do {
            return try await definition.run(parsed, commandContext)
        } catch let usage as CommandUsageError {
            output.printError("Error: \(usage)")
            return 2
        } catch {
            output.printError("Error: \(error)")
            return 1
        }
    }
}

/// `health` of Swift plugins that declare ``PortalPlugin/healthCheck``.
func sdkHealth(_ sink: mb_bytes_sink?, _ sinkContext: UnsafeMutableRawPointer?, _ error: mb_host_error_buffer) -> mb_status {
    guard let sink, let check = PluginExport.pluginType?.healthCheck else {
        write("no health check", into: error)
        return MB_ERR_UNSUPPORTED
    }
    let report = PluginExtrasBridge.wait(fallback: PluginHealthReport(.failing, "health check did not answer")) { await check() }
    report.json.withUnsafeBufferPointer { sink(sinkContext, mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    return MB_OK
}
