import Foundation
import MeltyEd25519

@testable import MeltyLicense

/// libFuzzer target for license parsing: the input as a license string
/// (``LicenseVerifier/verify(_:now:instanceID:)``: shape, base64url, Ed25519), the input as a
/// payload signed with a test key (so ``License/init(payload:)`` reads it whatever it holds),
/// as a configured public key, and as a timestamp.
///
/// A payload that verifies must re-issue to the same license string, and a timestamp that
/// parses must format back to the same text: one license, one spelling.
enum LicenseFuzzTarget {
    /// RFC 8032 test vector 1 (seed then public key), the example key of docs/licenses.md; public, never a real key.
    static let secretKey = ByteEncoding.fromHex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
            + "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")!
    static let verifier = try! LicenseVerifier(publicKeyHex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    static let now = Date(timeIntervalSince1970: 1_751_328_000)

    static func run(_ bytes: [UInt8], _ text: String) {
        _ = try? verifier.verify(text, now: now, instanceID: "fuzz-instance")
        _ = try? LicenseVerifier(publicKeyHex: text)

        let signed = "MB1.\(ByteEncoding.base64URL(bytes)).\(ByteEncoding.base64URL(try! Ed25519.sign(bytes, secretKey: secretKey)))"
        FuzzInput.trace("license: \(Result { try verifier.verifyIgnoringInstanceBinding(signed, now: now) })")
        if let license = try? verifier.verifyIgnoringInstanceBinding(signed, now: now) {
            let reissued = try? LicenseIssuer.sign(license, secretKey: secretKey)
            if reissued != signed { FuzzInput.violated("a verified license re-issues to the same string", "\(signed) became \(reissued ?? "an error")") }
        }

        if let date = License.parseTimestamp(text), License.formatTimestamp(date) != text {
            FuzzInput.violated("a parsed timestamp formats back to its text", "\(text) became \(License.formatTimestamp(date))")
        }
    }
}

/// libFuzzer's entry point.
@_cdecl("LLVMFuzzerTestOneInput")
public func licenseFuzzTest(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: count))
    LicenseFuzzTarget.run(bytes, String(decoding: bytes, as: UTF8.self))
    return 0
}
