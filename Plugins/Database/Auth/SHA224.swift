import COpenSSL

/// SHA-224 (FIPS 180-4), which GoTrue's token hashes use, from OpenSSL (swift-crypto and
/// libsodium do not offer it).
enum SHA224 {
    /// The digest of `bytes` as lowercase hex (56 characters).
    static func hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 28)
        var length: UInt32 = 0
        let status = bytes.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha224(), nil)
            }
        }
        // EVP_Digest cannot fail for SHA-224 short of memory exhaustion; a zero digest would
        // then match no stored token (never a false match).
        guard status == 1, length == 28 else { return String(repeating: "0", count: 56) }
        return digest.map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }
}
