import Foundation
import Logging
import MeltyEd25519
import MeltyLicense

/// This machine as its own license vendor, for evaluation.
///
/// When no `[license] public_key` is configured, a fresh instance could not be set up
/// without a terminal (someone has to run `meltybase license keygen` and `issue`). So the
/// kernel then keeps an Ed25519 signing key of its own in the data directory
/// (`evaluation-license-signing.key`, mode 0600, created before setup) and verifies
/// licenses with its public half. The Studio offers "use this machine's evaluation
/// license" through a loopback-only, pre-setup-only route that signs an indie license.
/// A configured vendor key always wins: the evaluation key is then neither created nor
/// used, and only the vendor's licenses verify.
public struct EvaluationLicense: Sendable {
    /// File name of the secret key inside the data directory (libsodium's 64-byte secret key as hex).
    public static let secretKeyFileName = "evaluation-license-signing.key"
    /// Tier of an evaluation license.
    public static let tier = License.Tier.indie
    /// Admin seats of an evaluation license.
    public static let seats = 3
    /// How long an evaluation license is valid (90 days).
    public static let validity: TimeInterval = 90 * 86_400
    /// Licensee of an evaluation license.
    public static let ownerEmail = "evaluation@meltybase.localhost"
    /// Licensee name of an evaluation license.
    public static let ownerName = "Evaluation (this machine)"

    /// The secret key file.
    public let secretKeyPath: String
    /// The public key (64 hex characters): the kernel's license public key while no vendor key is configured.
    public let publicKeyHex: String

    /// The evaluation key for `config`, or nil when a vendor key is configured. Before
    /// setup (`initialized` false) the key is created if missing; after setup it is only
    /// loaded if it exists, so that licenses it signed (replacements too) keep verifying.
    public static func prepare(config: KernelConfig, initialized: Bool, logger: Logger) throws -> EvaluationLicense? {
        guard (config.licensePublicKey ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        let path = (config.keysDirectory as NSString).appendingPathComponent(secretKeyFileName)
        let existed = FileManager.default.fileExists(atPath: path)
        if initialized && !existed { return nil }
        var secretKey: [UInt8]
        do {
            secretKey = try SecretKeyFile.loadOrCreate(
                path: path, length: 64, purpose: "the evaluation license signing key", generate: { Ed25519.generate().secretKey })
        } catch {
            throw LicenseIssuerError(error.description)
        }
        defer { Ed25519.wipe(&secretKey) }
        let evaluation = EvaluationLicense(secretKeyPath: path, publicKeyHex: ByteEncoding.hex(Array(secretKey[32..<64])))
        if !existed {
            logger.notice(
                "No [license] public_key configured: this machine signs its own evaluation licenses (indie, \(seats) seats, 90 days) with \(path) (mode 0600). Configure the vendor's public key to accept only vendor licenses."
            )
        }
        return evaluation
    }

    /// A fresh evaluation license string and what it holds.
    public func issue(now: Date = Date()) throws(LicenseIssuerError) -> (key: String, license: License) {
        let key = try LicenseIssuer.issue(
            secretKeyFile: secretKeyPath, ownerEmail: Self.ownerEmail, ownerName: Self.ownerName, tier: Self.tier,
            seats: Self.seats, expiresAt: now.addingTimeInterval(Self.validity), now: now)
        do {
            return (key, try LicenseVerifier(publicKeyHex: publicKeyHex).verify(key, now: now))
        } catch {
            throw LicenseIssuerError("the evaluation license does not verify: \(error)")
        }
    }
}
