import MeltyLicense

extension LicenseVerifier {
    /// A verifier for the kernel's configured public key.
    public init(config: KernelConfig) throws(LicenseError) {
        try self.init(publicKeyHex: config.licensePublicKey)
    }
}
