import ArgumentParser
import Foundation
import Kernel

/// `meltybase keys`: the key set every kernel of a cluster shares.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create or show the key set (sealing, audit signing, evaluation license and vault master keys).",
        discussion: """
            Every kernel sharing one system database needs the same key set. Create it once, copy the folder to each \
            machine (mode 0700, files 0600), and point every kernel at it with [kernel] keys_dir or MELTYBASE_KEYS_DIR. \
            A kernel whose keys differ from the ones the cluster registered refuses to start and names the key. \
            See docs/cluster.md.

              meltybase keys init --out /etc/meltybase/keys
              meltybase keys show --dir /etc/meltybase/keys
            """,
        subcommands: [Init.self, Show.self])

    /// The folder a subcommand works on: `--out`, else the configured key directory.
    fileprivate static func directory(out: String?, options: ConfigOptions) throws -> String {
        if let out { return URL(fileURLWithPath: out).standardizedFileURL.path }
        do {
            return try options.load().keysDirectory
        } catch let error as CommandError {
            throw CommandError("\(error.description) (or name the folder: --out DIR for init, --dir DIR for show)")
        }
    }

    fileprivate static func print(_ reports: [ClusterKeySet.FileReport]) {
        for report in reports {
            let state = report.created ? "created" : (report.id == nil ? "missing" : "kept")
            Swift.print("\(state.padding(toLength: 8, withPad: " ", startingAt: 0)) \(report.path)")
            Swift.print("         \(report.purpose)\(report.id.map { ": \($0)" } ?? "")")
        }
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create the missing keys of a key set (existing files are kept).",
            discussion: """
                Writes mfa-secret.key, audit-signing.key (+ .pub), evaluation-license-signing.key and vault-master.key \
                into the folder (default: [kernel] keys_dir, else the data directory). Then give every kernel:
                  [kernel] keys_dir = "<folder>"
                  [plugins.vault.config] master_key_file = "<folder>/vault-master.key"
                """)

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: ArgumentHelp("The key set's folder (created with mode 0700).", valueName: "dir"))
        var out: String?

        func run() throws {
            let directory = try KeysCommand.directory(out: out, options: options)
            do {
                KeysCommand.print(try ClusterKeySet.create(directory: directory))
            } catch {
                throw CommandError("\(error)")
            }
            Swift.print(
                """

                Give every kernel of the cluster this folder (copy it with its modes, e.g. `scp -rp`):
                  [kernel] keys_dir = "\(directory)"              (or MELTYBASE_KEYS_DIR=\(directory))
                  [plugins.vault.config] master_key_file = "\(directory)/\(ClusterKeySet.vaultMasterKeyFileName)"
                Keep a copy off the machine: without these files sealed secrets and vault secrets cannot be opened.
                """)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Print the ids of the key set's keys (never the keys), to compare kernels.")

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: ArgumentHelp("The key set's folder (default: [kernel] keys_dir, else the data directory).", valueName: "dir"))
        var dir: String?

        func run() throws {
            let directory = try KeysCommand.directory(out: dir, options: options)
            do {
                KeysCommand.print(try ClusterKeySet.inspect(directory: directory))
            } catch {
                throw CommandError("\(error)")
            }
        }
    }
}
