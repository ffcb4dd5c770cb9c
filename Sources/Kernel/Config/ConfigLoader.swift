import Foundation
import TOMLKit

/// Parses `plugins.toml` with TOMLKit into a validated ``KernelConfig``.
///
/// Unknown keys, wrong types and bad values are ``ConfigError``s naming the file, the line
/// and the key. `MELTYBASE_*` environment variables then override URLs and secrets:
/// `MELTYBASE_DATABASE_URL`, `MELTYBASE_REDIS_URL`, `MELTYBASE_DATA_DIR`,
/// `MELTYBASE_PLUGIN_DIR`, `MELTYBASE_KEYS_DIR`, `MELTYBASE_LICENSE_PUBLIC_KEY`.
public struct ConfigLoader {
    /// Environment consulted for overrides (injectable for tests).
    public var environment: [String: String]

    /// A loader reading overrides from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// Reads and validates the file at `path`.
    public func load(path: String) throws -> KernelConfig {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(file: path, line: nil, key: nil, message: "cannot read the file; pass an existing file with --config")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, key: nil, message: "the file is not valid UTF-8")
        }
        return try parse(text, path: url.path)
    }

    /// Validates TOML `text` as if read from `path` (relative paths resolve against its folder).
    public func parse(_ text: String, path: String) throws -> KernelConfig {
        let root: TOMLTable
        // TOMLKit's parser would abort the process on this input (see TOMLParserGuard).
        if let (line, problem) = TOMLParserGuard.firstAbortingInput(in: text) {
            throw ConfigError(file: path, line: line, key: nil, message: "TOML syntax error: \(problem)")
        }
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: path, line: error.source.begin.line, key: nil, message: "TOML syntax error: \(error.description)")
        }
        let reader = TableReader(file: path, locator: TOMLKeyLocator(source: text))
        let directory = (path as NSString).deletingLastPathComponent
        var config = KernelConfig.defaults(directory: directory)
        config.sourcePath = path

        try reader.checkKeys(
            root, prefix: "",
            allowed: ["kernel", "listeners", "database", "redis", "rate_limit", "plugins", "portals", "license", "admin", "backup", "metering", "quotas", "prices"])

        if let kernel = try reader.table(root, "kernel", prefix: "") {
            let kernelKeys: Set<String> = ["data_dir", "keys_dir", "plugin_dir", "body_limit_bytes", "request_timeout_seconds", "log_level", "trusted_proxies"]
            try reader.checkKeys(kernel, prefix: "kernel", allowed: kernelKeys)
            if let value = try reader.string(kernel, "data_dir", prefix: "kernel") { config.dataDirectory = resolve(value, against: directory) }
            if let entries = try reader.stringArray(kernel, "trusted_proxies", prefix: "kernel") {
                do {
                    config.trustedProxies = try TrustedProxies(entries)
                } catch {
                    throw reader.error(
                        "kernel.trusted_proxies",
                        "\(error.description); expected the proxies' addresses (\"10.0.0.10\", \"127.0.0.1\", \"fd00::10\") or a network of proxies only (\"10.0.5.0/28\")")
                }
            }
            if let value = try reader.string(kernel, "keys_dir", prefix: "kernel"), !value.isEmpty { config.keysDirectorySetting = resolve(value, against: directory) }
            if let value = try reader.string(kernel, "plugin_dir", prefix: "kernel"), !value.isEmpty { config.pluginDirectory = resolve(value, against: directory) }
            if let value = try reader.int(kernel, "body_limit_bytes", prefix: "kernel", range: 1024...(1 << 30)) { config.bodyLimitBytes = value }
            if let value = try reader.number(kernel, "request_timeout_seconds", prefix: "kernel", range: 0.1...3600) { config.requestTimeoutSeconds = value }
            if let value = try reader.string(kernel, "log_level", prefix: "kernel") {
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains(value) else {
                    throw reader.error("kernel.log_level", "expected one of \(levels.joined(separator: ", ")), found \"\(value)\"")
                }
                config.logLevel = value
            }
        }

        if let listeners = root["listeners"] {
            guard let array = listeners.array else { throw reader.error("listeners", "expected an array of tables ([[listeners]])") }
            config.listeners = try array.enumerated().map { index, item in
                let prefix = "listeners.\(index)"
                guard let table = item.table else { throw reader.error(prefix, "expected a table") }
                try reader.checkKeys(table, prefix: prefix, allowed: ["host", "port", "tls", "tls_certificate", "tls_key", "client_ca", "client_certificates"])
                var listener = ListenerConfig(host: "127.0.0.1", port: 3000)
                if let host = try reader.string(table, "host", prefix: prefix) { listener.host = host }
                if let port = try reader.int(table, "port", prefix: prefix, range: 0...65535) { listener.port = port }
                listener.tlsCertificatePath = try reader.string(table, "tls_certificate", prefix: prefix).map { resolve($0, against: directory) }
                listener.tlsKeyPath = try reader.string(table, "tls_key", prefix: prefix).map { resolve($0, against: directory) }
                listener.clientCAPath = try reader.string(table, "client_ca", prefix: prefix).map { resolve($0, against: directory) }
                if (listener.tlsCertificatePath == nil) != (listener.tlsKeyPath == nil) {
                    throw reader.error(prefix, "tls_certificate and tls_key must be given together")
                }
                if let value = try reader.string(table, "tls", prefix: prefix) {
                    guard value == "auto" else {
                        throw reader.error(
                            "\(prefix).tls",
                            "expected \"auto\" (certificates created in <data_dir>/certs on first start), found \"\(value)\"; for your own certificates set tls_certificate and tls_key instead"
                        )
                    }
                    guard listener.tlsCertificatePath == nil else {
                        throw reader.error("\(prefix).tls", "tls = \"auto\" creates its own certificate: remove tls_certificate and tls_key, or remove tls")
                    }
                    listener.automaticTLS = true
                }
                if listener.clientCAPath != nil && !listener.usesTLS {
                    throw reader.error("\(prefix).client_ca", "client certificates need TLS: set tls_certificate and tls_key (or tls = \"auto\") too")
                }
                if let value = try reader.string(table, "client_certificates", prefix: prefix) {
                    let policies = ClientCertificatePolicy.allCases.map(\.rawValue)
                    guard let policy = ClientCertificatePolicy(rawValue: value) else {
                        throw reader.error("\(prefix).client_certificates", "expected one of \(policies.joined(separator: ", ")), found \"\(value)\"")
                    }
                    guard listener.clientCAPath != nil else {
                        throw reader.error("\(prefix).client_certificates", "client_certificates needs client_ca: the CA that signs the accepted client certificates")
                    }
                    listener.clientCertificates = policy
                }
                return listener
            }
            if config.listeners.isEmpty { throw reader.error("listeners", "at least one listener is needed") }
        }

        for section in ["database", "redis"] {
            if let table = try reader.table(root, section, prefix: "") {
                try reader.checkKeys(table, prefix: section, allowed: ["url"])
                let url = try reader.string(table, "url", prefix: section).flatMap { $0.isEmpty ? nil : $0 }
                if section == "database" { config.databaseURL = url } else { config.redisURL = url }
            }
        }

        if let limits = try reader.table(root, "rate_limit", prefix: "") {
            try reader.checkKeys(limits, prefix: "rate_limit", allowed: ["per_client", "per_portal"])
            config.rateLimit.perClient = try reader.bucket(limits, "per_client", prefix: "rate_limit")
            config.rateLimit.perPortal = try reader.bucket(limits, "per_portal", prefix: "rate_limit")
        }

        if let license = try reader.table(root, "license", prefix: "") {
            try reader.checkKeys(license, prefix: "license", allowed: ["public_key"])
            config.licensePublicKey = try reader.string(license, "public_key", prefix: "license")
        }

        if let admin = try reader.table(root, "admin", prefix: "") {
            try reader.checkKeys(admin, prefix: "admin", allowed: ["require_client_certificate"])
            if let value = try reader.bool(admin, "require_client_certificate", prefix: "admin") {
                if value && !config.listeners.contains(where: { $0.clientCAPath != nil }) {
                    throw reader.error(
                        "admin.require_client_certificate",
                        "no listener has client_ca, so no client could present a certificate; set client_ca (and client_certificates = \"optional\" to keep other routes open) on a TLS listener, e.g. with the files from `meltybase certs init`"
                    )
                }
                config.adminRequiresClientCertificate = value
            }
        }

        if let backup = try reader.table(root, "backup", prefix: "") {
            try reader.checkKeys(
                backup, prefix: "backup",
                allowed: ["enabled", "directory", "archive_timeout_seconds", "base_backup_interval_hours", "keep_count", "keep_days"])
            if let value = try reader.bool(backup, "enabled", prefix: "backup") { config.backup.enabled = value }
            if let value = try reader.string(backup, "directory", prefix: "backup") {
                guard !value.isEmpty else { throw reader.error("backup.directory", "expected a folder path; leave the key out for <data_dir>/backups") }
                config.backup.directory = resolve(value, against: directory)
            }
            if let value = try reader.int(backup, "archive_timeout_seconds", prefix: "backup", range: 1...3600) { config.backup.archiveTimeoutSeconds = value }
            if let value = try reader.int(backup, "base_backup_interval_hours", prefix: "backup", range: 0...8760) { config.backup.baseBackupIntervalHours = value }
            if let value = try reader.int(backup, "keep_count", prefix: "backup", range: 1...10000) { config.backup.keepCount = value }
            if let value = try reader.int(backup, "keep_days", prefix: "backup", range: 0...36500) { config.backup.keepDays = value }
        }

        if let plugins = try reader.table(root, "plugins", prefix: "") {
            for name in plugins.keys {
                let prefix = "plugins.\(name)"
                try reader.checkName(name, key: prefix, what: "plugin")
                guard let table = plugins[name]?.table else { throw reader.error(prefix, "expected a table [\(prefix)]") }
                try reader.checkKeys(table, prefix: prefix, allowed: ["path", "required", "config", "egress_hosts"])
                guard let path = try reader.string(table, "path", prefix: prefix) else {
                    throw reader.error(prefix, "missing 'path': the plugin's shared library (e.g. path = \"lib\(name).so\")")
                }
                let required = try reader.bool(table, "required", prefix: prefix) ?? false
                var json = "{}"
                if let sub = try reader.table(table, "config", prefix: prefix) { json = sub.convert(to: .json) }
                config.plugins.append(
                    PluginConfig(
                        name: name, path: path, required: required, configJSON: json,
                        line: reader.locator.line(of: prefix) ?? 0, egressHosts: try reader.egressHosts(table, prefix: prefix)))
            }
            config.plugins.sort { $0.line < $1.line }
        }

        if let portals = try reader.table(root, "portals", prefix: "") {
            for name in portals.keys {
                let prefix = "portals.\(name)"
                try reader.checkName(name, key: prefix, what: "portal")
                guard let table = portals[name]?.table else { throw reader.error(prefix, "expected a table [\(prefix)]") }
                try reader.checkKeys(table, prefix: prefix, allowed: ["plugins", "rate_limit", "egress_hosts"])
                let names = try reader.stringArray(table, "plugins", prefix: prefix) ?? []
                for plugin in names where !config.plugins.contains(where: { $0.name == plugin }) {
                    throw reader.error("\(prefix).plugins", "plugin \"\(plugin)\" is not declared; add a [plugins.\(plugin)] table or remove it from the list")
                }
                let bucket = try reader.bucket(table, "rate_limit", prefix: prefix)
                config.portals.append(PortalConfig(name: name, plugins: names, rateLimit: bucket, egressHosts: try reader.egressHosts(table, prefix: prefix)))
            }
            config.portals.sort { (reader.locator.line(of: "portals.\($0.name)") ?? 0) < (reader.locator.line(of: "portals.\($1.name)") ?? 0) }
        }

        try HubConfigReader(reader: reader).read(root, into: &config.hub)

        for index in config.plugins.indices {
            config.plugins[index].path = resolve(config.plugins[index].path, against: config.pluginDirectory)
        }
        applyEnvironment(to: &config)
        return config
    }

    private func applyEnvironment(to config: inout KernelConfig) {
        func value(_ name: String) -> String? {
            guard let value = environment[name], !value.isEmpty else { return nil }
            return value
        }
        if let url = value("MELTYBASE_DATABASE_URL") { config.databaseURL = url }
        if let url = value("MELTYBASE_REDIS_URL") { config.redisURL = url }
        if let key = value("MELTYBASE_LICENSE_PUBLIC_KEY") { config.licensePublicKey = key }
        if let directory = value("MELTYBASE_DATA_DIR") { config.dataDirectory = directory }
        if let directory = value("MELTYBASE_KEYS_DIR") { config.keysDirectorySetting = resolve(directory, against: FileManager.default.currentDirectoryPath) }
        if let directory = value("MELTYBASE_PLUGIN_DIR") {
            let old = config.pluginDirectory
            config.pluginDirectory = directory
            for index in config.plugins.indices where config.plugins[index].path.hasPrefix(old + "/") {
                config.plugins[index].path = directory + config.plugins[index].path.dropFirst(old.count)
            }
        }
    }

    private func resolve(_ path: String, against directory: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + path.dropFirst(1) }
        return URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }
}
