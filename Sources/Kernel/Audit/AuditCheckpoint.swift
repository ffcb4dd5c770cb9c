import MeltyEd25519

/// A signed statement "the log had `seq` entries and its head hash was `headHash`",
/// stored in `meltybase.audit_checkpoints`. Cutting entries off the end of the log
/// leaves a checkpoint pointing past the head, which ``AuditChain/verify(on:trustedPublicKey:)``
/// reports.
public struct AuditCheckpoint: Sendable, Equatable {
    /// Row id (increasing).
    public var id: Int64
    /// When it was written, RFC 3339 UTC with microseconds.
    public var at: String
    /// The entry the checkpoint covers (the head when it was written).
    public var seq: Int64
    /// That entry's hash.
    public var headHash: String
    /// Ed25519 signature of ``signedMessage``, hex.
    public var signature: String
    /// The signer's Ed25519 public key, hex.
    public var publicKey: String

    /// The bytes signed: `meltybase-audit-checkpoint\n<seq>\n<headHash>` (UTF-8, no trailing newline).
    public static func signedMessage(seq: Int64, headHash: String) -> [UInt8] {
        Array("meltybase-audit-checkpoint\n\(seq)\n\(headHash)".utf8)
    }

    /// Whether ``signature`` verifies for this checkpoint's seq and head hash under `publicKey`.
    public func signatureVerifies(publicKey: [UInt8]) -> Bool {
        guard let signatureBytes = ByteEncoding.fromHex(signature) else { return false }
        return Ed25519.verify(signatureBytes, of: Self.signedMessage(seq: seq, headHash: headHash), publicKey: publicKey)
    }
}
