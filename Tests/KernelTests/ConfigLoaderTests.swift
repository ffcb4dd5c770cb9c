import Foundation
import MeltyTestServices
import Testing

@testable import Kernel

@Suite("plugins.toml parsing and validation", .timeLimit(.minutes(3)))
struct ConfigLoaderTests {
    let loader = ConfigLoader(environment: [:])

    @Test("the committed plugins.toml is valid and runs the example plugins, the Database plugin and the vault in portal demo")
    func committedConfig() throws {
        let config = try loader.load(path: TestServices.repositoryRoot + "/plugins.toml")
        #expect(Array(config.plugins.map(\.name).prefix(2)) == ["echo-c", "echo-swift"])
        #expect(config.plugins.map(\.name).contains("database") && config.plugins.map(\.name).contains("vault"))
        let demo = Set(config.portals.first?.plugins ?? [])
        #expect(demo.isSuperset(of: ["echo-c", "echo-swift", "database", "vault"]))
        #expect(config.usesEmbeddedPostgres && config.usesEmbeddedRedis)
        #expect(config.listeners == [ListenerConfig(host: "127.0.0.1", port: 3000)])
        #expect(config.plugins[1].configJSON.contains("hello from Swift"))
    }

    @Test("an unknown key is an error naming file, line and key")
    func unknownKey() {
        let text = "[kernel]\nlog_level = \"info\"\n\n[plugins.a]\npath = \"x.so\"\nrequird = true\n"
        let error = #expect(throws: ConfigError.self) { try loader.parse(text, path: "/etc/mb/plugins.toml") }
        #expect(error?.line == 6)
        #expect(error?.key == "plugins.a.requird")
        #expect(error?.description.hasPrefix("/etc/mb/plugins.toml:6: key 'plugins.a.requird': unknown key") == true)
    }

    @Test("a value of the wrong type names its line")
    func wrongType() {
        let error = #expect(throws: ConfigError.self) {
            try loader.parse("# comment\n[[listeners]]\nhost = \"127.0.0.1\"\nport = \"eighty\"\n", path: "/x/plugins.toml")
        }
        #expect(error?.line == 4)
        #expect(error?.key == "listeners.0.port")
        #expect(error?.message.contains("expected an integer") == true)
    }

    @Test("an out-of-range value and a bad level are refused with the allowed values")
    func badValues() {
        let range = #expect(throws: ConfigError.self) { try loader.parse("[[listeners]]\nport = 70000\n", path: "/p.toml") }
        #expect(range?.message.contains("0 to 65535") == true)
        let level = #expect(throws: ConfigError.self) { try loader.parse("[kernel]\nlog_level = \"loud\"\n", path: "/p.toml") }
        #expect(level?.line == 2)
        #expect(level?.message.contains("trace") == true)
    }

    @Test("a TOML syntax error reports the parser's line")
    func syntaxError() {
        let error = #expect(throws: ConfigError.self) { try loader.parse("[kernel]\nlog_level = \n", path: "/p.toml") }
        #expect(error?.line == 2)
        #expect(error?.message.contains("TOML syntax error") == true)
    }

    @Test("input TOMLKit's parser aborted on is an error with its line (found by the config fuzz target)")
    func inputTOMLKitAbortedOn() {
        let cases: [(String, Int, String)] = [
            ("[[[1]]]\n", 1, "table header"), ("[kernel]\n\n[=]\n", 3, "table header"), ("a = 1\n[\u{1A}portgsi]\n", 2, "table header"),
            ("\u{FEFF}[ \u{7F}]", 1, "table header"), ("[[ #]]\n", 1, "table header"),
            ("[portals.acme]\nplugins = [}\n", 2, "'}'"), ("a = [1,\n  # c\n  }]", 3, "'}'"), ("a = {b=[}]}", 1, "'}'"),
            ("a = [\u{2028}]", 1, "U+2028"), ("a = [1,\u{85}2]", 1, "U+2028"), ("[a\u{2029}]", 1, "U+2028"),
        ]
        for (text, line, problem) in cases {
            let error = #expect(throws: ConfigError.self, "\(text.debugDescription)") { try loader.parse(text, path: "/p.toml") }
            #expect(error?.line == line, "\(text.debugDescription)")
            #expect(error?.message.contains(problem) == true, "\(text.debugDescription): \(error?.message ?? "")")
        }
        // '[' inside values (arrays over several lines, multi-line strings) is not a header, '}' in strings and comments no value.
        let text =
            "[plugins.a]\npath = \"a.so\"\n[plugins.a.config]\nm = [\n  [ [1], [2] ],\n  [+1, \"]\"], # [= }\n]\ns = \"\"\"\n[=]\n\"\"\"\nt = '''\n[[[x}\u{2028}\n'''\nu = { v = [{ w = 1 }] }\n"
        #expect(throws: Never.self) { try loader.parse(text, path: "/p.toml") }
    }

    @Test("a portal naming an undeclared plugin is refused")
    func undeclaredPlugin() {
        let error = #expect(throws: ConfigError.self) {
            try loader.parse("[portals.acme]\nplugins = [\"vault\"]\n", path: "/p.toml")
        }
        #expect(error?.line == 2)
        #expect(error?.message.contains("plugin \"vault\" is not declared") == true)
    }

    @Test("bad portal and plugin names are refused")
    func badNames() {
        #expect(throws: ConfigError.self) { try loader.parse("[portals.Acme]\nplugins = []\n", path: "/p.toml") }
        #expect(throws: ConfigError.self) { try loader.parse("[plugins.\"a b\"]\npath = \"x.so\"\n", path: "/p.toml") }
    }

    @Test("mTLS without TLS and half a TLS pair are refused")
    func tlsPairs() {
        #expect(throws: ConfigError.self) { try loader.parse("[[listeners]]\nclient_ca = \"ca.pem\"\n", path: "/p.toml") }
        #expect(throws: ConfigError.self) { try loader.parse("[[listeners]]\ntls_certificate = \"c.pem\"\n", path: "/p.toml") }
    }

    @Test("tls = \"auto\" turns TLS on without files; other values and a mix with tls_certificate are refused")
    func automaticTLS() throws {
        let config = try loader.parse("[[listeners]]\nport = 3443\ntls = \"auto\"\nclient_ca = \"ca.pem\"\n", path: "/p.toml")
        #expect(config.listeners[0].automaticTLS && config.listeners[0].usesTLS && config.listeners[0].scheme == "https")
        #expect(config.listeners[0].tlsCertificatePath == nil)
        let other = #expect(throws: ConfigError.self) { try loader.parse("[[listeners]]\ntls = \"on\"\n", path: "/p.toml") }
        #expect(other?.key == "listeners.0.tls")
        #expect(throws: ConfigError.self) {
            try loader.parse("[[listeners]]\ntls = \"auto\"\ntls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n", path: "/p.toml")
        }
    }

    @Test("the key set lives in the data directory unless keys_dir or MELTYBASE_KEYS_DIR names another folder")
    func keysDirectory() throws {
        let plain = try loader.parse("[kernel]\ndata_dir = \"state\"\n", path: "/srv/mb/plugins.toml")
        #expect(plain.keysDirectory == "/srv/mb/state")
        let configured = try loader.parse("[kernel]\ndata_dir = \"state\"\nkeys_dir = \"keys\"\n", path: "/srv/mb/plugins.toml")
        #expect(configured.keysDirectory == "/srv/mb/keys")
        let fromEnvironment = try ConfigLoader(environment: ["MELTYBASE_KEYS_DIR": "/run/secrets/mb"]).parse(
            "[kernel]\nkeys_dir = \"keys\"\n", path: "/srv/mb/plugins.toml")
        #expect(fromEnvironment.keysDirectory == "/run/secrets/mb")
    }

    @Test("MELTYBASE_* variables override URLs and the license key; relative paths resolve against the file")
    func environmentOverrides() throws {
        let environment = ["MELTYBASE_DATABASE_URL": "postgres://db/x", "MELTYBASE_REDIS_URL": "redis://r:6379", "MELTYBASE_LICENSE_PUBLIC_KEY": "abcd"]
        let text =
            "[database]\nurl = \"postgres://file/y\"\n[kernel]\ndata_dir = \"state\"\nplugin_dir = \"plugins\"\n[plugins.p]\npath = \"libp.so\"\n[plugins.p.config]\nmode = \"fast\"\nlimit = 3\n"
        let config = try ConfigLoader(environment: environment).parse(text, path: "/srv/mb/plugins.toml")
        #expect(config.databaseURL == "postgres://db/x")
        #expect(config.redisURL == "redis://r:6379")
        #expect(config.licensePublicKey == "abcd")
        #expect(config.dataDirectory == "/srv/mb/state")
        #expect(config.plugins[0].path == "/srv/mb/plugins/libp.so")
        let json = try JSONSerialization.jsonObject(with: Data(config.plugins[0].configJSON.utf8)) as? [String: Any]
        #expect(json?["mode"] as? String == "fast")
        #expect(json?["limit"] as? Int == 3)
    }

    @Test("rate limits parse as token buckets, with a per-portal override")
    func rateLimits() throws {
        let text = "[rate_limit]\nper_client = { rate = 10, burst = 20 }\n[plugins.p]\npath = \"/p.so\"\n[portals.a]\nplugins = [\"p\"]\nrate_limit = { rate = 1.5 }\n"
        let config = try loader.parse(text, path: "/p.toml")
        #expect(config.rateLimit.perClient == TokenBucketConfig(rate: 10, burst: 20))
        #expect(config.portals[0].rateLimit == TokenBucketConfig(rate: 1.5, burst: 2))
        let missing = #expect(throws: ConfigError.self) { try loader.parse("[rate_limit]\nper_portal = { burst = 3 }\n", path: "/p.toml") }
        #expect(missing?.message.contains("missing 'rate'") == true)
    }
}
