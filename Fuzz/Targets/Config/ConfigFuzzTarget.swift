import Foundation

@testable import Kernel

/// libFuzzer target for the config loader: the whole input is `plugins.toml` text, parsed
/// by ``ConfigLoader/parse(_:path:)`` (TOMLKit, then validation into ``KernelConfig``) with
/// and without environment overrides. A refusal must be a ``ConfigError`` whose line, when
/// it names one, lies in the file.
enum ConfigFuzzTarget {
    /// Loaders without and with environment overrides (a computed list: `ConfigLoader` is not `Sendable`).
    static var loaders: [ConfigLoader] {
        [
            ConfigLoader(environment: [:]),
            ConfigLoader(environment: ["MELTYBASE_PLUGIN_DIR": "/opt/meltybase/plugins", "MELTYBASE_DATABASE_URL": "postgres://db/meltybase"]),
        ]
    }

    static func run(_ text: String) {
        let lineCount = text.split(separator: "\n", omittingEmptySubsequences: false).count
        for loader in loaders {
            do {
                let config = try loader.parse(text, path: "/etc/meltybase/plugins.toml")
                if config.listeners.isEmpty { FuzzInput.violated("a loaded config has a listener", text) }
                FuzzInput.trace("config: \(config.listeners.count) listener(s), \(config.plugins.count) plugin(s), \(config.portals.count) portal(s)")
            } catch let error as ConfigError {
                FuzzInput.trace("error: \(error)")
                if let line = error.line, line < 1 || line > lineCount + 1 {
                    FuzzInput.violated("a config error's line lies in the file", "line \(line) of \(lineCount): \(error)")
                }
            } catch {
                FuzzInput.violated("the loader throws only ConfigError", "\(type(of: error)): \(error)")
            }
        }
    }
}

/// libFuzzer's entry point.
@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzzTest(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    ConfigFuzzTarget.run(FuzzInput(data, count).text)
    return 0
}
