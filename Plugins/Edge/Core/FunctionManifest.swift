import MeltyJSON

/// What a function declares about itself, from its `function.json` or the manifest keys of
/// the admin endpoint's deploy body. Every value is validated here, once; unknown keys are
/// refused by name so a typo (`verifyJwt`) never silently falls back to a default.
public struct FunctionManifest: Sendable, Equatable {
    /// The file name of the manifest in a function's folder.
    public static let fileName = "function.json"
    /// The keys a manifest may hold.
    public static let keys: Set<String> = ["entrypoint", "verify_jwt", "allow_net", "secrets", "limits", "env"]
    /// The entrypoint used when none is named: the first of these the bundle holds.
    public static let defaultEntrypoints = ["index.ts", "index.js", "index.mts", "index.mjs", "main.ts", "main.js"]
    /// File extensions an entrypoint may have.
    public static let moduleExtensions: Set<String> = ["ts", "tsx", "mts", "js", "jsx", "mjs"]
    /// The most entries in each of `allow_net`, `secrets` and `env`.
    public static let maxEntries = 100
    /// The longest `env` value, in bytes.
    public static let maxEnvValueBytes = 4096
    /// Environment variable prefixes the runtime keeps for itself.
    public static let reservedEnvPrefixes = ["DENO_", "MELTYBASE_"]

    /// The module the worker loads, relative to the bundle; nil means "the first of
    /// ``defaultEntrypoints`` that exists" (``FunctionBundle`` resolves it).
    public var entrypoint: String?
    /// Whether a request must carry a valid JWT of the portal (`verify_jwt`, default true).
    public var verifyJWT: Bool
    /// Hosts the function may reach (`host` or `host:port`), passed to Deno's `--allow-net`.
    public var allowNet: [String]
    /// Names of the portal's Vault secrets exposed to the function as environment variables.
    public var secrets: [String]
    /// The function's limits as given (a JSON object); the plugin validates them.
    public var limits: JSONValue?
    /// Plain, non-secret environment variables.
    public var env: [String: String]

    /// A validated manifest; throws ``EdgeDeployError/Code/invalidManifest`` naming the bad value.
    public init(
        entrypoint: String? = nil, verifyJWT: Bool = true, allowNet: [String] = [], secrets: [String] = [], limits: JSONValue? = nil, env: [String: String] = [:]
    ) throws(EdgeDeployError) {
        try self.init(entrypoint: entrypoint, verifyJWT: verifyJWT, allowNet: allowNet, secrets: secrets, limits: limits, env: env, source: nil)
    }

    private init(
        entrypoint: String?, verifyJWT: Bool, allowNet: [String], secrets: [String], limits: JSONValue?, env: [String: String], source: String?
    ) throws(EdgeDeployError) {
        func refuse(_ message: String, hint: String? = nil) -> EdgeDeployError { EdgeDeployError(.invalidManifest, message, file: source, hint: hint) }
        if let entrypoint {
            let path: String
            do {
                path = try BundlePath.normalize(entrypoint)
            } catch {
                throw refuse("entrypoint: \(error.message)")
            }
            guard let dot = path.lastIndex(of: "."), Self.moduleExtensions.contains(String(path[path.index(after: dot)...])) else {
                throw refuse(
                    "entrypoint \(FunctionName.quoted(entrypoint)) is not a module",
                    hint: "name a file ending in " + Self.moduleExtensions.sorted().map { "." + $0 }.joined(separator: ", "))
            }
            self.entrypoint = path
        } else {
            self.entrypoint = nil
        }
        self.verifyJWT = verifyJWT

        guard allowNet.count <= Self.maxEntries else { throw refuse("allow_net lists \(allowNet.count) hosts; the limit is \(Self.maxEntries)") }
        var hosts = Set<String>()
        for host in allowNet {
            if let problem = Self.hostProblem(host) {
                throw refuse("allow_net: \(FunctionName.quoted(host)) \(problem.message)", hint: problem.hint)
            }
            guard hosts.insert(host.lowercased()).inserted else { throw refuse("allow_net lists \(FunctionName.quoted(host)) twice") }
        }
        self.allowNet = allowNet

        guard secrets.count <= Self.maxEntries else { throw refuse("secrets lists \(secrets.count) names; the limit is \(Self.maxEntries)") }
        var secretNames = Set<String>()
        for name in secrets {
            guard Self.isVariableName(name) else {
                throw refuse("secrets: \(FunctionName.quoted(name)) is not a secret name", hint: "secret names match [A-Za-z_][A-Za-z0-9_]{0,127}")
            }
            guard secretNames.insert(name).inserted else { throw refuse("secrets lists \(FunctionName.quoted(name)) twice") }
        }
        self.secrets = secrets

        if let limits, limits.objectValue == nil {
            throw refuse("limits must be a JSON object, not \(limits.kind)")
        }
        self.limits = limits

        guard env.count <= Self.maxEntries else { throw refuse("env has \(env.count) variables; the limit is \(Self.maxEntries)") }
        for (name, value) in env.sorted(by: { $0.key < $1.key }) {
            guard Self.isVariableName(name) else {
                throw refuse("env: \(FunctionName.quoted(name)) is not a variable name", hint: "variable names match [A-Za-z_][A-Za-z0-9_]{0,127}")
            }
            if let prefix = Self.reservedEnvPrefixes.first(where: { name.hasPrefix($0) }) {
                throw refuse("env: \(name) starts with \(prefix), which the runtime reserves")
            }
            guard !secretNames.contains(name) else {
                throw refuse("\(name) is both a secret and an env variable", hint: "keep it in secrets only if its value is secret")
            }
            guard value.utf8.count <= Self.maxEnvValueBytes else {
                throw refuse("env: the value of \(name) is \(value.utf8.count) bytes; the limit is \(Self.maxEnvValueBytes)")
            }
            guard !value.utf8.contains(0) else { throw refuse("env: the value of \(name) contains a NUL byte") }
        }
        self.env = env
    }

    /// Parses `function.json` (errors name that file).
    public init(json bytes: [UInt8]) throws(EdgeDeployError) {
        let members: [(key: String, value: ArraySlice<UInt8>)]
        do {
            members = try JSONSlices.members(of: bytes)
        } catch {
            throw EdgeDeployError(.invalidManifest, "\(Self.fileName) is not a JSON object: \(error.description)", file: Self.fileName)
        }
        try self.init(members: members, source: Self.fileName)
    }

    /// A manifest from the members of a JSON object (`source` is the file errors name, if
    /// any). A member outside ``keys`` or given twice is refused.
    init(members: [(key: String, value: ArraySlice<UInt8>)], source: String?) throws(EdgeDeployError) {
        func refuse(_ message: String, hint: String? = nil) -> EdgeDeployError { EdgeDeployError(.invalidManifest, message, file: source, hint: hint) }
        var values: [String: JSONValue] = [:]
        for (key, raw) in members {
            guard Self.keys.contains(key) else {
                throw refuse("unknown key \(FunctionName.quoted(key))", hint: "a manifest may hold " + Self.keys.sorted().joined(separator: ", "))
            }
            guard values[key] == nil else { throw refuse("the key \(key) is given twice") }
            guard let value = JSONValue(json: raw) else { throw refuse("the value of \(key) is not valid JSON (a number out of range?)") }
            values[key] = value
        }
        func strings(_ key: String) throws(EdgeDeployError) -> [String] {
            guard let value = values[key], value != .null else { return [] }
            guard let array = value.arrayValue else { throw refuse("\(key) must be an array of strings, not \(value.kind)") }
            var result: [String] = []
            for element in array {
                guard let text = element.stringValue else { throw refuse("\(key) must hold only strings; found \(element.kind)") }
                result.append(text)
            }
            return result
        }
        var entrypoint: String?
        if let value = values["entrypoint"], value != .null {
            guard let text = value.stringValue else { throw refuse("entrypoint must be a string, not \(value.kind)") }
            entrypoint = text
        }
        var verifyJWT = true
        if let value = values["verify_jwt"], value != .null {
            guard let flag = value.boolValue else { throw refuse("verify_jwt must be true or false, not \(value.kind)") }
            verifyJWT = flag
        }
        var env: [String: String] = [:]
        if let value = values["env"], value != .null {
            guard let object = value.objectValue else { throw refuse("env must be an object of strings, not \(value.kind)") }
            for (name, element) in object {
                guard let text = element.stringValue else { throw refuse("env: the value of \(FunctionName.quoted(name)) must be a string, not \(element.kind)") }
                env[name] = text
            }
        }
        let limits = values["limits"].flatMap { $0 == .null ? nil : $0 }
        try self.init(
            entrypoint: entrypoint, verifyJWT: verifyJWT, allowNet: try strings("allow_net"), secrets: try strings("secrets"), limits: limits, env: env, source: source)
    }

    /// The manifest as a JSON object with every key (`entrypoint` only when known, `limits` only when given).
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "verify_jwt": .bool(verifyJWT),
            "allow_net": .array(allowNet.map(JSONValue.string)),
            "secrets": .array(secrets.map(JSONValue.string)),
            "env": .object(env.mapValues(JSONValue.string)),
        ]
        if let entrypoint { object["entrypoint"] = .string(entrypoint) }
        if let limits { object["limits"] = limits }
        return .object(object)
    }

    /// ``json`` as text with sorted keys (what is stored and hashed).
    public var jsonText: String {
        // A JSONValue of strings, booleans and decoded numbers always encodes.
        String(decoding: (try? JSONValue.serialize(json)) ?? Array("{}".utf8), as: UTF8.self)
    }

    /// `[A-Za-z_][A-Za-z0-9_]{0,127}`.
    static func isVariableName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 128 else { return false }
        func letter(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || byte == UInt8(ascii: "_")
        }
        return letter(first) && bytes.allSatisfy { letter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// Why `entry` is not a `host` or `host:port` Deno's `--allow-net` accepts, or nil.
    static func hostProblem(_ entry: String) -> (message: String, hint: String?)? {
        let hint = "write a host name or address, optionally with a port: api.example.com, api.example.com:443, 10.0.0.5, [2001:db8::1]:8443"
        if entry.isEmpty { return ("is empty", hint) }
        if entry.utf8.count > 262 { return ("is longer than a host name can be", hint) }
        if entry.contains("://") { return ("has a scheme", hint) }
        if entry.contains("/") { return ("has a path", hint) }
        if entry.contains("*") {
            if entry.hasPrefix("*.") {
                return ("is a wildcard: Deno's --allow-net does not support wildcard subdomains", "list each host the function calls (api.example.com, auth.example.com)")
            }
            return ("has a wildcard, which Deno's --allow-net does not support", hint)
        }
        if entry.unicodeScalars.contains(where: { !$0.isASCII }) {
            return ("has non-ASCII characters", "write an internationalised host name in its punycode form (xn--...)")
        }
        var host = Substring(entry)
        var port: Substring?
        if entry.hasPrefix("[") {
            guard let close = entry.firstIndex(of: "]") else { return ("opens '[' without closing it", hint) }
            let address = entry[entry.index(after: entry.startIndex)..<close]
            let rest = entry[entry.index(after: close)...]
            guard address.contains(":"), address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return ("is not an IPv6 address in brackets", hint) }
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return ("has text after ']'", hint) }
                port = rest.dropFirst()
            }
            host = ""
        } else {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count > 2 { return ("has several ':'", "put an IPv6 address in brackets: [2001:db8::1]:443") }
            host = parts[0]
            if parts.count == 2 { port = parts[1] }
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber), let number = Int(port), (1...65535).contains(number) else {
                return ("has a port that is not a number from 1 to 65535", hint)
            }
        }
        if !entry.hasPrefix("[") {
            guard !host.isEmpty, host.utf8.count <= 253 else { return ("has no host or one longer than 253 characters", hint) }
            for label in host.split(separator: ".", omittingEmptySubsequences: false) {
                guard !label.isEmpty, label.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                    label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
                else { return ("is not a valid host name", hint) }
            }
        }
        return nil
    }
}
