import MeltyJSON

/// One reason a function cannot be deployed, with where it is when the reason is in the
/// code: `file` is relative to the bundle (never a temporary directory), `line` and
/// `column` are 1-based.
public struct EdgeDeployError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem it is (the `code` of the HTTP error body).
    public enum Code: String, Sendable, Equatable, CaseIterable {
        /// The function's name does not match `[a-z0-9][a-z0-9_-]{0,62}`.
        case invalidName = "invalid_name"
        /// `function.json` (or the manifest keys of the admin endpoint) is not acceptable.
        case invalidManifest = "invalid_manifest"
        /// The files are not acceptable (size, count, paths, encoding, no entrypoint).
        case invalidBundle = "invalid_bundle"
        /// A module does not parse.
        case syntaxError = "syntax_error"
        /// TypeScript's checker refused a module.
        case typeError = "type_error"
        /// A module imports `http:`, `https:`, `npm:` or `jsr:`: nothing is downloaded at deploy.
        case remoteImport = "remote_import"
        /// A module imports something that is not in the bundle (or leaves its folder).
        case unresolvedImport = "unresolved_import"
        /// The entrypoint exports no handler (raised by the plugin from a worker's READY).
        case missingExport = "missing_export"
        /// Deno could not be run, or did not finish in time.
        case denoUnavailable = "deno_unavailable"
    }

    /// The kind of problem.
    public var code: Code
    /// What is wrong, for a person.
    public var message: String
    /// The file, relative to the bundle root (`lib/db.ts`), when the problem is in one.
    public var file: String?
    /// 1-based line in `file`.
    public var line: Int?
    /// 1-based column in `file`.
    public var column: Int?
    /// What to do about it, when there is something specific to say.
    public var hint: String?

    /// A problem of `code`, optionally located.
    public init(_ code: Code, _ message: String, file: String? = nil, line: Int? = nil, column: Int? = nil, hint: String? = nil) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint
    }

    /// `file:line:column: message (code)`.
    public var description: String {
        var location = file ?? ""
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return (location.isEmpty ? "" : location + ": ") + message + " (\(code.rawValue))"
    }

    /// The JSON object an API answers with (`code`, `message`, `file`, `line`, `column`, `hint`; absent members omitted).
    public var json: JSONValue {
        var object: [String: JSONValue] = ["code": .string(code.rawValue), "message": .string(message)]
        if let file { object["file"] = .string(file) }
        if let line { object["line"] = JSONValue(line) }
        if let column { object["column"] = JSONValue(column) }
        if let hint { object["hint"] = .string(hint) }
        return .object(object)
    }
}

/// A deploy refused for one or more reasons (a type check may find several; at most
/// ``limit`` are kept).
public struct EdgeDeployRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// The most problems one rejection carries.
    public static let limit = 20

    /// The problems, in the order they were found (never empty).
    public let errors: [EdgeDeployError]

    /// A rejection for `errors` (cut to ``limit``).
    public init(_ errors: [EdgeDeployError]) {
        self.errors = Array(errors.prefix(Self.limit))
    }

    /// The first problem's code (what an HTTP error's `code` says).
    public var code: EdgeDeployError.Code { errors.first?.code ?? .invalidBundle }

    /// One problem per line.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
