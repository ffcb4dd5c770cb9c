import ArgumentParser
import Foundation
import Kernel
import MeltyEd25519
import MeltyLicense
import MeltyVendorTools

/// `meltybase license keygen|issue|verify`: vendor tooling for Ed25519-signed licenses.
struct LicenseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "license",
        abstract: "Create signing keys, issue licenses and check them (Ed25519, offline).",
        discussion: """
            A license is MB1.<payload>.<signature>: the base64url of a canonical JSON payload and of its Ed25519 signature. Kernels verify it offline with the vendor's public key, set as [license] public_key in plugins.toml or as MELTYBASE_LICENSE_PUBLIC_KEY. The format is specified in docs/licenses.md.

              meltybase license keygen --out ~/mb-vendor
              meltybase license issue --key ~/mb-vendor/license-signing.key \\
                  --owner ops@acme.example --name "Acme GmbH" \\
                  --tier commercial --seats 20 > acme.license
              meltybase license verify \\
                  --public-key "$(cat ~/mb-vendor/license-signing.pub)" - < acme.license
            """,
        subcommands: [Keygen.self, Issue.self, Verify.self])

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a license signing key pair.",
            discussion: """
                Writes DIR/license-signing.key (the secret key, mode 0600: keep it offline and out of version control) and DIR/license-signing.pub (the public key that kernels are configured with). Never overwrites existing files.

                  meltybase license keygen --out ~/mb-vendor
                """)

        @Option(name: .long, help: ArgumentHelp("Directory for the two key files (created with mode 0700 if missing).", valueName: "dir"))
        var out: String

        func run() throws {
            let files: LicenseIssuer.KeyFiles
            do {
                files = try LicenseIssuer.generateKeyFiles(directory: out)
            } catch {
                throw CommandError(error.description)
            }
            print(
                """
                wrote \(files.secretKeyPath) (secret, mode 0600: keep it offline, never commit it)
                wrote \(files.publicKeyPath)
                public key: \(files.publicKeyHex)

                Configure kernels with this in plugins.toml:
                  [license]
                  public_key = "\(files.publicKeyHex)"
                or with MELTYBASE_LICENSE_PUBLIC_KEY=\(files.publicKeyHex)
                """)
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a license and print the license string.",
            discussion: """
                Prints only the license string on standard output (a one-line summary goes to standard error), so it can be redirected to a file. The key file must have mode 0600 or stricter. Without --expires the license never expires; without --instance it is valid on any instance.

                  meltybase license issue --key license-signing.key \\
                      --owner ops@acme.example --name "Acme GmbH" \\
                      --tier commercial --seats 20 --expires 2027-12-31 > acme.license
                  meltybase license issue --key license-signing.key \\
                      --owner dev@example.com --tier indie --seats 1 \\
                      --instance prod-eu-1
                """)

        @Option(name: .long, help: ArgumentHelp("The secret key file from `license keygen`.", valueName: "file"))
        var key: String

        @Option(name: .long, help: ArgumentHelp("Licensee email (owner_email).", valueName: "email"))
        var owner: String

        @Option(name: .long, help: ArgumentHelp("Licensee name, e.g. a company (owner_name; default: empty).", valueName: "name"))
        var name: String = ""

        @Option(name: .long, help: ArgumentHelp("indie or commercial.", valueName: "tier"))
        var tier: String

        @Option(name: .long, help: ArgumentHelp("Number of admin seats, \(License.seatRange.lowerBound) to \(License.seatRange.upperBound).", valueName: "n"))
        var seats: Int

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Last day of validity, YYYY-MM-DD (valid through 23:59:59 UTC that day), or an exact time YYYY-MM-DDTHH:MM:SSZ. Default: never expires.",
                valueName: "date"))
        var expires: String?

        @Option(name: .long, help: ArgumentHelp("Bind the license to one instance id (letters, digits, . _ : -). Default: any instance.", valueName: "id"))
        var instance: String?

        func run() throws {
            guard let tier = License.Tier(rawValue: tier) else {
                throw ValidationError("--tier must be one of \(License.Tier.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(tier)\"")
            }
            var expiresAt: Date?
            if let expires {
                let text = expires.trimmingCharacters(in: .whitespaces)
                guard let date = License.parseTimestamp(text.utf8.count == 10 ? text + "T23:59:59Z" : text) else {
                    throw CommandError("--expires must be a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM:SSZ (UTC), found \"\(expires)\"")
                }
                expiresAt = date
            }
            let owner = owner.trimmingCharacters(in: .whitespacesAndNewlines)
            let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
            let license: String
            do {
                license = try LicenseIssuer.issue(
                    secretKeyFile: key, ownerEmail: owner, ownerName: name, tier: tier, seats: seats,
                    expiresAt: expiresAt, instance: instance)
            } catch {
                throw CommandError(error.description)
            }
            print(license)
            let expiry = expiresAt.map { "expires \(License.formatTimestamp($0))" } ?? "never expires"
            let binding = instance.map { ", bound to instance \($0)" } ?? ""
            FileHandle.standardError.write(Data("issued a \(tier.rawValue) license for \(owner): \(seats) seat\(seats == 1 ? "" : "s"), \(expiry)\(binding)\n".utf8))
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a license and print its fields.",
            discussion: """
                Exits 0 and prints the fields when the license is well formed, correctly signed and not expired; otherwise prints the reason and exits 1.

                The public key comes from --public-key; else from the --config file ([license] public_key, overridden by MELTYBASE_LICENSE_PUBLIC_KEY as in the kernel); else from ./plugins.toml if it exists; else from MELTYBASE_LICENSE_PUBLIC_KEY. A license bound to an instance is checked against --instance when given, and only reported otherwise.

                  meltybase license verify --public-key "$(cat license-signing.pub)" \\
                      - < acme.license
                  meltybase license verify --config plugins.toml "$(cat acme.license)"
                """)

        @Option(name: .customLong("public-key"), help: ArgumentHelp("The vendor public key (64 hex characters).", valueName: "hex"))
        var publicKey: String?

        @Option(name: .long, help: ArgumentHelp("Read the public key from this plugins.toml.", valueName: "file"))
        var config: String?

        @Option(name: .long, help: ArgumentHelp("This instance's id, to check a bound license.", valueName: "id"))
        var instance: String?

        @Argument(help: ArgumentHelp("The license string, or - to read it from standard input.", valueName: "license"))
        var license: String

        func validate() throws {
            if publicKey != nil && config != nil { throw ValidationError("pass either --public-key or --config, not both") }
        }

        func run() throws {
            let text = license == "-" ? Self.readStandardInput() : license
            let keyHex = try publicKeyHex()
            let license: License
            do {
                let verifier = try LicenseVerifier(publicKeyHex: keyHex)
                license = instance == nil ? try verifier.verifyIgnoringInstanceBinding(text) : try verifier.verify(text, instanceID: instance)
            } catch {
                let hint = error == .noPublicKey ? " (or pass --public-key)" : ""
                throw CommandError("license refused: \(error)\(hint)")
            }
            var binding = "any instance"
            if let bound = license.instance {
                binding = bound + (instance == nil ? " (not checked: pass --instance ID)" : " (matches)")
            }
            print("license valid")
            printTable([
                ["id", license.id],
                ["owner_name", license.ownerName.isEmpty ? "-" : license.ownerName],
                ["owner_email", license.ownerEmail],
                ["tier", license.tier.rawValue],
                ["seats", String(license.seats)],
                ["issued_at", License.formatTimestamp(license.issuedAt)],
                ["expires_at", license.expiresAt.map(License.formatTimestamp) ?? "never"],
                ["instance", binding],
            ])
        }

        /// The key from the flags, else the config file (or ./plugins.toml, or the
        /// environment alone) through the config loader, which applies the overrides.
        private func publicKeyHex() throws -> String? {
            if let publicKey { return publicKey }
            let loader = ConfigLoader()
            do {
                if let config { return try loader.load(path: config).licensePublicKey }
                if FileManager.default.fileExists(atPath: "plugins.toml") { return try loader.load(path: "plugins.toml").licensePublicKey }
                return try loader.parse("", path: FileManager.default.currentDirectoryPath + "/plugins.toml").licensePublicKey
            } catch {
                throw CommandError("cannot read the license public key from the configuration: \(error)")
            }
        }

        /// At most one byte more than a license may have; the verifier refuses longer input.
        private static func readStandardInput() -> String {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while bytes.count <= License.maximumStringBytes {
                let count = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
