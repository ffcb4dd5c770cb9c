// swift-tools-version:6.1
import PackageDescription

/// MeltyBase: one kernel binary, plugins loaded through a C ABI.
let package = Package(
    name: "MeltyBase",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "meltybase", targets: ["meltybase"]),
        /// The C contract between kernel and plugins (header only).
        .library(name: "MeltyPluginABI", targets: ["MeltyPluginABI"]),
        /// The Swift SDK that turns the C ABI into async Swift.
        .library(name: "MeltyPluginSDK", targets: ["MeltyPluginSDK"]),
        /// Example plugin written in Swift on the SDK.
        .library(name: "EchoSwiftPlugin", type: .dynamic, targets: ["EchoSwiftPlugin"]),
        /// The Database plugin (REST, auth and SQL console over a Postgres database per portal).
        .library(name: "DatabasePlugin", type: .dynamic, targets: ["DatabasePlugin"]),
        /// The Vault: AES-256-GCM envelope encryption of portal secrets (`vault.v1`).
        .library(name: "VaultPlugin", type: .dynamic, targets: ["VaultPlugin"]),
        /// Realtime: Supabase Realtime's protocol (broadcast, presence, Postgres changes under RLS).
        .library(name: "RealtimePlugin", type: .dynamic, targets: ["RealtimePlugin"]),
        /// Edge: Deno functions per portal in warm, limited worker processes.
        .library(name: "EdgePlugin", type: .dynamic, targets: ["EdgePlugin"]),
        /// Intelligence: Sentient SQL, OpenClaw agents and the Knowledge Mesh vector store.
        .library(name: "IntelligencePlugin", type: .dynamic, targets: ["IntelligencePlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // Already in the graph through Hummingbird: the kernel's connection channel
        // (KernelConnectionChannel) converts HTTP/1 parts to HTTP types as Hummingbird does.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        // jwt-kit 5.7.1 needs swift-crypto 4.1 or later, so "from: 3.12.3" (which stops below 4) cannot resolve.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .target(name: "MeltyPluginABI", path: "Sources/MeltyPluginABI"),
        /// The ABI's byte conversions (error buffers, host/plugin bytes to Swift and back),
        /// one copy shared by the kernel and the Swift plugin SDK.
        .target(name: "MeltyABIBytes", dependencies: ["MeltyPluginABI"], path: "Sources/MeltyABIBytes"),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        /// OpenSSL's TLS library (libssl with libcrypto), for clients that speak TLS on their own sockets (SMTP).
        .systemLibrary(name: "COpenSSLTLS", path: "Sources/COpenSSLTLS", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CArgon2", path: "Sources/CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        .target(name: "MeltyBuildSignature", path: "Sources/MeltyBuildSignature"),
        /// The one Postgres layer (libpq, non-blocking, on an epoll loop): connections, the
        /// pool, LISTEN/NOTIFY and logical replication, for the kernel, the CLI and plugins.
        .target(
            name: "MeltyPostgres",
            dependencies: ["CLibPQ"],
            path: "Sources/MeltyPostgres"
        ),
        /// The Vault's domain: AES-256-GCM (OpenSSL EVP), master keys, envelopes, storage,
        /// rotation. No kernel import: the plugin and the CLI both use it.
        .target(
            name: "VaultCore",
            dependencies: ["COpenSSL", "CSodium", "MeltyPostgres", "MeltyJSON"],
            path: "Plugins/Vault/Core"
        ),
        /// A small Redis client (hiredis) for the kernel and plugins: URLs, AUTH, a pool of connections.
        .target(
            name: "MeltyRedis",
            dependencies: ["CHiredis", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            path: "Sources/MeltyRedis"
        ),
        /// The private Postgres and Redis the kernel starts when plugins.toml names no servers:
        /// initdb, an unprivileged account when run as root, supervised restarts.
        .target(
            name: "MeltyEmbedded",
            dependencies: [
                "MeltyPostgres", "MeltyRedis", "MeltyProcess", .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/MeltyEmbedded"
        ),
        /// Backups of the embedded Postgres: WAL segment arithmetic and archive gap checks, base
        /// backups and retention, verification, point-in-time restore, the backup schedule.
        .target(
            name: "MeltyBackup",
            dependencies: ["MeltyEmbedded", "MeltyPostgres", "MeltyProcess", .product(name: "Logging", package: "swift-log")],
            path: "Sources/MeltyBackup"
        ),
        /// Child processes for the kernel and plugins: posix_spawn with exactly the named
        /// descriptors, a given environment, its own process group; pipes, waiting, limits.
        .target(
            name: "MeltyProcess",
            path: "Sources/MeltyProcess"
        ),
        /// JSON shared by the kernel, the CLI and plugins: the canonical writer (the audit
        /// chain's hashed text and the license payload), the string escaper, and `JSONValue`.
        .target(name: "MeltyJSON", path: "Sources/MeltyJSON"),
        /// Outgoing mail: an SMTP client (plain, STARTTLS, implicit TLS; AUTH PLAIN/LOGIN) on the
        /// shared epoll loop, and RFC 5322 / MIME message formatting.
        .target(name: "MeltyMail", dependencies: ["COpenSSLTLS", "MeltyPostgres"], path: "Sources/MeltyMail"),
        /// TOTP (RFC 6238) and base32: admin MFA in the kernel, portal users' factors in the Database plugin.
        .target(
            name: "MeltyTOTP",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/MeltyTOTP"
        ),
        /// Argon2id password hashing (PHC strings): admins in the kernel, portal users in the Database plugin.
        .target(name: "MeltyPasswords", dependencies: ["CArgon2", "CSodium"], path: "Sources/MeltyPasswords"),
        /// The QR encoder (byte mode, level M, versions 1 to 10) drawing SVG on the server.
        .target(name: "MeltyQR", path: "Sources/MeltyQR"),
        /// Ed25519 signatures (libsodium) and the hex/base64url encodings of keys and signatures.
        .target(name: "MeltyEd25519", dependencies: ["CSodium"], path: "Sources/MeltyEd25519"),
        /// The license format (`MB1.<payload>.<signature>`), its verifier and its signer: the
        /// kernel verifies and signs evaluation licenses, the CLI issues vendor licenses.
        .target(
            name: "MeltyLicense",
            dependencies: ["CSodium", "MeltyEd25519", "MeltyJSON"],
            path: "Sources/MeltyLicense"
        ),
        /// Vendor and operator tooling only the CLI runs: license key generation and the
        /// certificate authority of `meltybase certs init`.
        .target(
            name: "MeltyVendorTools",
            dependencies: [
                "MeltyEd25519", "MeltyLicense",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/MeltyVendorTools"
        ),
        .target(
            name: "MeltyPluginSDK",
            dependencies: ["MeltyPluginABI", "MeltyABIBytes", "MeltyBuildSignature", "MeltyJSON"],
            path: "Sources/MeltyPluginSDK"
        ),
        .target(
            name: "Kernel",
            dependencies: [
                "MeltyPluginABI", "MeltyABIBytes", "MeltyPostgres", "MeltyRedis", "MeltyEmbedded", "MeltyProcess", "MeltyBackup", "CSodium",
                "MeltyJSON", "MeltyTOTP", "MeltyPasswords", "MeltyQR", "MeltyEd25519", "MeltyLicense",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                // HTTPParserError: the inherited-socket server maps parser errors as Hummingbird's Application does.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                "MeltyBuildSignature",
            ],
            path: "Sources/Kernel",
            // The Studio's HTML, CSS and JavaScript, served at /dashboard (StudioAssets).
            resources: [.copy("Studio/Assets")]
        ),
        .executableTarget(
            name: "meltybase",
            dependencies: [
                "Kernel",
                "MeltyBackup",
                "MeltyEd25519",
                "MeltyLicense",
                "MeltyVendorTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/meltybase"
        ),
        .target(
            name: "PortalDatabaseCore",
            dependencies: ["MeltyPostgres", .product(name: "Crypto", package: "swift-crypto")],
            path: "Plugins/Database/Core"
        ),
        .target(
            name: "DatabasePlugin",
            dependencies: [
                "MeltyPluginSDK", "PortalDatabaseCore", "MeltyPostgres", "MeltyJSON", "MeltyTOTP", "MeltyPasswords", "MeltyQR", "MeltyMail", "CSodium", "COpenSSL",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Plugins/Database",
            exclude: ["Core"],
            // The Database page of the Studio (ABI 1.5 studio_directory: MeltyBase_DatabasePlugin.resources/Studio).
            resources: [.copy("Studio")]
        ),
        .target(
            name: "EchoSwiftPlugin",
            dependencies: ["MeltyPluginSDK", "MeltyJSON"],
            path: "Plugins/Examples/EchoSwift"
        ),
        .target(
            name: "VaultPlugin",
            dependencies: ["MeltyPluginSDK", "VaultCore", "MeltyPostgres", "MeltyJSON"],
            path: "Plugins/Vault",
            exclude: ["Core"],
            // The Vault page of the Studio (ABI 1.5 studio_directory: MeltyBase_VaultPlugin.resources/Studio).
            resources: [.copy("Studio")]
        ),
        /// Realtime's domain without the SDK glue: the protocol codec, channels, presence,
        /// change filters and change capture (pgoutput to row changes, RLS visibility).
        .target(
            name: "RealtimeCore",
            dependencies: ["PortalDatabaseCore", "MeltyPostgres", "MeltyRedis", "MeltyJSON"],
            path: "Plugins/Realtime/Core"
        ),
        .target(
            name: "RealtimePlugin",
            dependencies: ["MeltyPluginSDK", "RealtimeCore", "PortalDatabaseCore", "MeltyPostgres", "MeltyRedis", "MeltyJSON"],
            path: "Plugins/Realtime",
            exclude: ["Core"],
            // The Realtime page of the Studio (ABI 1.5 studio_directory: MeltyBase_RealtimePlugin.resources/Studio).
            resources: [.copy("Studio")]
        ),
        /// Edge's Deno worker processes: the frame protocol, a pool per function version, and
        /// the CPU, memory, wall-clock, size and concurrency limits.
        .target(
            name: "EdgeWorkers",
            dependencies: ["MeltyPostgres", "MeltyJSON", "MeltyProcess"],
            path: "Plugins/Edge/Workers"
        ),
        /// Edge's functions: bundles and their manifests, deploy checks, the function store.
        .target(
            name: "EdgeCore",
            dependencies: ["EdgeWorkers", "MeltyPostgres", "MeltyJSON", "MeltyProcess"],
            path: "Plugins/Edge/Core"
        ),
        .target(
            name: "EdgePlugin",
            dependencies: [
                "MeltyPluginSDK", "EdgeCore", "EdgeWorkers", "MeltyPostgres", "MeltyJSON", "MeltyProcess",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Plugins/Edge",
            exclude: ["Core", "Workers"],
            // The Deno runner of every worker and the Edge page of the Studio
            // (MeltyBase_EdgePlugin.resources/Runtime and .../Studio).
            resources: [.copy("Runtime"), .copy("Studio")]
        ),
        /// hnswlib (Debian's header-only libhnswlib-dev) behind a small C API. Optimised even in
        /// debug builds: the index is the hot loop of every vector search.
        .target(
            name: "CHNSW",
            path: "Plugins/Intelligence/CHNSW",
            cxxSettings: [.unsafeFlags(["-O3", "-std=c++17"])]
        ),
        /// The Knowledge Mesh's domain: HNSW indexes and their snapshots, collections in
        /// Postgres, metadata filters, anonymisation for federation.
        .target(
            name: "IntelligenceVectors",
            dependencies: ["CHNSW", "MeltyPostgres", "MeltyJSON"],
            path: "Plugins/Intelligence/Core/Vectors"
        ),
        /// Sentient SQL's domain: diagnoses of failed statements from the catalog, corrected
        /// statements checked with EXPLAIN, RLS policy proposals tried as synthetic users.
        .target(
            name: "SentientSQL",
            dependencies: ["MeltyPostgres", "MeltyJSON"],
            path: "Plugins/Intelligence/Core/SQL"
        ),
        /// OpenAI-compatible chat completions (tool calls, SSE streaming) and embeddings:
        /// request and response codecs over a transport the plugin supplies.
        .target(
            name: "ModelProvider",
            dependencies: ["MeltyJSON"],
            path: "Plugins/Intelligence/Core/Provider"
        ),
        /// OpenClaw agents' domain: runs, steps and budgets in Postgres, the plan-act-observe
        /// loop, sub-agents, resumption.
        .target(
            name: "AgentCore",
            dependencies: ["ModelProvider", "MeltyPostgres", "MeltyJSON"],
            path: "Plugins/Intelligence/Core/Agents"
        ),
        .target(
            name: "IntelligencePlugin",
            dependencies: [
                "MeltyPluginSDK", "IntelligenceVectors", "SentientSQL", "ModelProvider", "AgentCore", "PortalDatabaseCore", "MeltyPostgres", "MeltyJSON",
            ],
            path: "Plugins/Intelligence",
            exclude: ["Core", "CHNSW"],
            // The Intelligence pages of the Studio (MeltyBase_IntelligencePlugin.resources/Studio).
            resources: [.copy("Studio")]
        ),
        /// The in-process side of Benchmarks/vectors.sh: recall@10 and QPS of the Knowledge
        /// Mesh's HNSW index on the vectors the script generated.
        .executableTarget(
            name: "bench-vectors",
            dependencies: ["IntelligenceVectors"],
            path: "Benchmarks/VectorBench",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        /// The bare swift-nio HTTP/1 peer of Benchmarks/gateway.sh (canned response, no framework).
        .executableTarget(
            name: "bench-nio-peer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/NIOPeer",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        /// The WebSocket load generator of Benchmarks/realtime.sh (Phoenix sockets on bare NIO
        /// pipelines, source addresses over 127.0.0.0/8; Redis and LISTEN peers).
        .executableTarget(
            name: "bench-realtime",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/RealtimeLoad",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "MeltyRedisTests",
            dependencies: ["MeltyRedis"],
            path: "Tests/MeltyRedisTests"
        ),
        /// Unit tests of the Database plugin's pure parts (the PostgREST query parser and its SQL).
        .testTarget(
            name: "DatabasePluginTests",
            dependencies: ["DatabasePlugin"],
            path: "Tests/DatabasePluginTests"
        ),
        /// The Realtime plugin's protocol codec, filters and change capture (against a real Postgres).
        .testTarget(
            name: "RealtimePluginTests",
            dependencies: ["RealtimeCore", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/RealtimePluginTests"
        ),
        /// Edge's workers, pools and limits against real Deno.
        .testTarget(
            name: "EdgeWorkersTests",
            dependencies: ["EdgeWorkers", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/EdgeWorkersTests"
        ),
        /// Edge's bundles, deploy checks and store against real Deno and Postgres.
        .testTarget(
            name: "EdgeCoreTests",
            dependencies: ["EdgeCore", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/EdgeCoreTests"
        ),
        /// The Knowledge Mesh's index, store and anonymiser (against a real Postgres).
        .testTarget(
            name: "IntelligenceVectorsTests",
            dependencies: ["IntelligenceVectors", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/IntelligenceVectorsTests"
        ),
        /// Sentient SQL's diagnoses and RLS proposals (against a real Postgres).
        .testTarget(
            name: "SentientSQLTests",
            dependencies: ["SentientSQL", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/SentientSQLTests"
        ),
        /// The provider codecs and the agent loop (against a real Postgres).
        .testTarget(
            name: "AgentCoreTests",
            dependencies: ["AgentCore", "ModelProvider", "MeltyTestServices", "MeltyPostgres", "MeltyJSON"],
            path: "Tests/AgentCoreTests"
        ),
        /// One real Postgres and Redis for the whole test process (the kernel's embedded-mode code).
        .target(
            name: "MeltyTestServices",
            dependencies: ["MeltyEmbedded", "MeltyPostgres", .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            path: "Tests/MeltyTestServices"
        ),
        .testTarget(
            name: "MeltyPostgresTests",
            dependencies: ["MeltyPostgres", "MeltyTestServices"],
            path: "Tests/MeltyPostgresTests"
        ),
        .testTarget(
            name: "VaultCoreTests",
            dependencies: ["VaultCore", "MeltyJSON", "MeltyPostgres", "MeltyTestServices"],
            path: "Tests/VaultCoreTests"
        ),
        .testTarget(
            name: "KernelTests",
            dependencies: [
                "Kernel", "VaultCore", "MeltyRedis", "MeltyEmbedded", "MeltyTestServices", "MeltyEd25519", "MeltyJSON", "MeltyLicense", "MeltyPasswords", "MeltyTOTP",
                "MeltyVendorTools",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "Tests/KernelTests"
        ),
        /// The Swift plugin SDK against fake host tables of older minor versions.
        .testTarget(
            name: "PluginSDKTests",
            dependencies: ["MeltyPluginSDK", "MeltyPluginABI"],
            path: "Tests/PluginSDKTests"
        ),
        .testTarget(name: "MeltyMailTests", dependencies: ["MeltyMail", "MeltyPostgres"], path: "Tests/MeltyMailTests"),
        /// WAL segment names and arithmetic, archive gap detection, retention, timestamps.
        .testTarget(name: "MeltyBackupTests", dependencies: ["MeltyBackup", "MeltyEmbedded"], path: "Tests/MeltyBackupTests"),
        .testTarget(name: "MeltyJSONTests", dependencies: ["MeltyJSON"], path: "Tests/MeltyJSONTests"),
        .testTarget(name: "MeltyTOTPTests", dependencies: ["MeltyTOTP"], path: "Tests/MeltyTOTPTests"),
        .testTarget(name: "MeltyPasswordsTests", dependencies: ["MeltyPasswords"], path: "Tests/MeltyPasswordsTests"),
        .testTarget(name: "MeltyQRTests", dependencies: ["MeltyQR", .product(name: "Crypto", package: "swift-crypto")], path: "Tests/MeltyQRTests"),
        .testTarget(
            name: "MeltyLicenseTests",
            dependencies: ["MeltyLicense", "MeltyEd25519", "MeltyVendorTools", "MeltyJSON"],
            path: "Tests/MeltyLicenseTests"
        ),
    ]
)
