import Foundation
import MeltyBackup
import MeltyEmbedded

/// The validated contents of `plugins.toml`, after environment overrides.
///
/// Nothing below the config loader reads raw TOML or environment variables; everything
/// the kernel needs to know about its settings lives here.
public struct KernelConfig: Sendable {
    /// Where the file was read from (used to resolve relative paths and in messages).
    public var sourcePath: String
    /// Data directory for the embedded Postgres and Redis and kernel state.
    public var dataDirectory: String
    /// `[kernel] keys_dir` / `MELTYBASE_KEYS_DIR`: where the key set lives, if not in the data directory.
    public var keysDirectorySetting: String? = nil
    /// The key set's directory (sealing, audit signing and evaluation license keys): the
    /// same files on every kernel of a cluster (docs/cluster.md).
    public var keysDirectory: String { keysDirectorySetting ?? dataDirectory }
    /// `[kernel] trusted_proxies`: load balancers whose `X-Forwarded-For` names the client.
    public var trustedProxies = TrustedProxies.none
    /// Directory where plugin paths are resolved; defaults to the executable's directory.
    public var pluginDirectory: String
    /// Largest accepted request body, in bytes.
    public var bodyLimitBytes: Int
    /// Time a plugin has to complete a request before the kernel answers 504.
    public var requestTimeoutSeconds: Double
    /// Minimum log level.
    public var logLevel: String
    /// HTTP listeners; at least one.
    public var listeners: [ListenerConfig]
    /// `nil`: embedded Postgres started by the kernel.
    public var databaseURL: String?
    /// `nil`: embedded redis-server started by the kernel.
    public var redisURL: String?
    /// Rate limits applied by the gateway.
    public var rateLimit: RateLimitConfig
    /// Plugins to load, in file order.
    public var plugins: [PluginConfig]
    /// Portals declared in the file, in file order.
    public var portals: [PortalConfig]
    /// Public key that verifies license signatures (hex), if configured.
    public var licensePublicKey: String?
    /// `[admin] require_client_certificate`: admin route groups need a verified client
    /// certificate (mTLS) from a listener's `client_ca`.
    public var adminRequiresClientCertificate: Bool = false
    /// `[backup]`: WAL archiving and base backups of the embedded Postgres.
    public var backup = BackupSettings()
    /// `[metering]`, `[quotas]`, `[prices]`: usage metering, quotas and the price book (docs/hub.md).
    public var hub = HubSettings()

    /// A configuration with every default and no plugins, rooted at `directory`.
    public static func defaults(directory: String) -> KernelConfig {
        KernelConfig(
            sourcePath: directory + "/plugins.toml",
            dataDirectory: directory + "/.meltybase",
            pluginDirectory: KernelConfig.executableDirectory,
            bodyLimitBytes: 2 * 1024 * 1024,
            requestTimeoutSeconds: 30,
            logLevel: "info",
            listeners: [ListenerConfig(host: "127.0.0.1", port: 3000)],
            databaseURL: nil,
            redisURL: nil,
            rateLimit: RateLimitConfig(),
            plugins: [],
            portals: [],
            licensePublicKey: nil,
            adminRequiresClientCertificate: false
        )
    }

    /// Directory of the running executable, where SwiftPM puts the plugin libraries too.
    public static var executableDirectory: String {
        let path =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        return (path as NSString).deletingLastPathComponent
    }

    /// Whether Postgres is started by the kernel rather than reached through a URL.
    public var usesEmbeddedPostgres: Bool { databaseURL == nil }
    /// Whether redis-server is started by the kernel rather than reached through a URL.
    public var usesEmbeddedRedis: Bool { redisURL == nil }
}

/// One HTTP listener, optionally with TLS and client-certificate (mTLS) checks.
public struct ListenerConfig: Sendable, Equatable {
    /// Address to bind, `127.0.0.1` by default.
    public var host: String
    /// Port to bind; 0 picks a free one.
    public var port: Int
    /// PEM certificate chain; with `tlsKeyPath` turns TLS on.
    public var tlsCertificatePath: String?
    /// PEM private key.
    public var tlsKeyPath: String?
    /// PEM CA bundle; when set, client certificates must be signed by it.
    public var clientCAPath: String?
    /// With `clientCAPath`: whether every client must present a certificate.
    public var clientCertificates: ClientCertificatePolicy
    /// `tls = "auto"`: `meltybase serve` creates an instance CA and a server certificate in
    /// `<data_dir>/certs` on first start (as `meltybase certs init` does) and serves them.
    public var automaticTLS = false

    /// A plain HTTP listener.
    public init(
        host: String, port: Int, tlsCertificatePath: String? = nil, tlsKeyPath: String? = nil, clientCAPath: String? = nil,
        clientCertificates: ClientCertificatePolicy = .required
    ) {
        self.host = host
        self.port = port
        self.tlsCertificatePath = tlsCertificatePath
        self.tlsKeyPath = tlsKeyPath
        self.clientCAPath = clientCAPath
        self.clientCertificates = clientCertificates
    }

    /// Whether the listener speaks TLS.
    public var usesTLS: Bool { tlsCertificatePath != nil || automaticTLS }
    /// `http` or `https`.
    public var scheme: String { usesTLS ? "https" : "http" }
}

/// `client_certificates` of a listener with `client_ca`.
public enum ClientCertificatePolicy: String, Sendable, Equatable, CaseIterable {
    /// The TLS handshake fails without a certificate signed by `client_ca`.
    case required
    /// A presented certificate must be signed by `client_ca`; clients without one connect
    /// too (routes that need one, like the admin groups, then answer 403).
    case optional
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
public struct TokenBucketConfig: Sendable, Equatable {
    /// Tokens added per second.
    public var rate: Double
    /// Bucket size: the number of requests that may arrive at once.
    public var burst: Int

    /// A bucket refilled at `rate` per second holding `burst` tokens.
    public init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = burst
    }
}

/// Gateway rate limits. A `nil` bucket means no limit of that kind.
public struct RateLimitConfig: Sendable, Equatable {
    /// Limit per client address, over all routes.
    public var perClient: TokenBucketConfig?
    /// Limit per portal, over all of its plugin routes (a portal may override it).
    public var perPortal: TokenBucketConfig?

    /// No limits.
    public init(perClient: TokenBucketConfig? = nil, perPortal: TokenBucketConfig? = nil) {
        self.perClient = perClient
        self.perPortal = perPortal
    }
}

/// One plugin entry, `[plugins.<name>]`.
public struct PluginConfig: Sendable, Equatable {
    /// Name the plugin must declare in its descriptor.
    public var name: String
    /// Absolute path of the shared library.
    public var path: String
    /// Whether start-up stops when the plugin fails to load or init.
    public var required: Bool
    /// The `[plugins.<name>.config]` subtable as JSON (an object).
    public var configJSON: String
    /// Line in the config file, for messages.
    public var line: Int
    /// `egress_hosts`: the only hosts its `http_fetch` may reach; nil means public hosts only.
    public var egressHosts: [String]? = nil
}

/// One portal declared in the file, `[portals.<name>]`.
public struct PortalConfig: Sendable, Equatable {
    /// Portal name, `[a-z0-9][a-z0-9_-]*`.
    public var name: String
    /// Plugins enabled for the portal.
    public var plugins: [String]
    /// Overrides `[rate_limit] per_portal` for this portal.
    public var rateLimit: TokenBucketConfig?
    /// `egress_hosts`: hosts the portal's plugins may reach (narrows each plugin's own list).
    public var egressHosts: [String]? = nil
}
