import Foundation
import MeltyEd25519
import MeltyVendorTools
import Testing

@testable import MeltyLicense

@Suite("Ed25519 licenses: canonical payload, verification, key files", .timeLimit(.minutes(3)))
struct LicenseTests {
    /// RFC 8032 test vector 1 as a libsodium secret key (seed then public key): the key of
    /// the worked example in docs/licenses.md. Public, so never a real key.
    static let exampleSecretKey = ByteEncoding.fromHex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
            + "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")!
    static let examplePublicKey = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    /// The worked example of docs/licenses.md, produced independently with Python's
    /// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` and `cryptography`.
    static let examplePayload =
        #"{"expires_at":"2030-12-31T23:59:59Z","id":"0b6d3c52-3f0e-4c1e-9a57-2f1d2a4c7e90","issued_at":"2025-06-01T09:30:00Z","owner_email":"ops@acme.example","owner_name":"Acme GmbH","seats":20,"tier":"commercial"}"#
    static let exampleLicense =
        "MB1.eyJleHBpcmVzX2F0IjoiMjAzMC0xMi0zMVQyMzo1OTo1OVoiLCJpZCI6IjBiNmQzYzUyLTNmMGUtNGMxZS05YTU3LTJmMWQyYTRjN2U5MCIsImlzc3VlZF9hdCI6IjIwMjUtMDYtMDFUMDk6MzA6MDBaIiwib3duZXJfZW1haWwiOiJvcHNAYWNtZS5leGFtcGxlIiwib3duZXJfbmFtZSI6IkFjbWUgR21iSCIsInNlYXRzIjoyMCwidGllciI6ImNvbW1lcmNpYWwifQ.J2WmG7kxPVb3teZuv20kWRQbtGe69289fNrztRKv7XJ9Nk4LPiGBLm1YLDBli6V6OpPsftyAae2lzCiPEh_XDg"
    static let exampleNow = License.parseTimestamp("2025-07-01T00:00:00Z")!

    static func exampleLicenseValue() throws -> License {
        try License(
            id: "0b6d3c52-3f0e-4c1e-9a57-2f1d2a4c7e90", ownerName: "Acme GmbH", ownerEmail: "ops@acme.example",
            tier: .commercial, seats: 20, issuedAt: License.parseTimestamp("2025-06-01T09:30:00Z")!,
            expiresAt: License.parseTimestamp("2030-12-31T23:59:59Z")!)
    }

    static var exampleVerifier: LicenseVerifier { try! LicenseVerifier(publicKeyHex: examplePublicKey) }

    /// `payload` signed with the example key, as a license string: for payloads the
    /// issuer would never produce.
    static func signed(_ payload: String) -> String {
        signed(Array(payload.utf8))
    }

    static func signed(_ payload: [UInt8]) -> String {
        let signature = try! Ed25519.sign(payload, secretKey: exampleSecretKey)
        return "MB1.\(ByteEncoding.base64URL(payload)).\(ByteEncoding.base64URL(signature))"
    }

    static func malformedProblem(_ license: String, now: Date = exampleNow) -> String? {
        do {
            _ = try exampleVerifier.verify(license, now: now)
            return nil
        } catch {
            guard case .malformed(let problem) = error else { return "not malformed but \(error.reasonCode)" }
            return problem
        }
    }

    // MARK: Format

    @Test("the worked example of docs/licenses.md: Swift reproduces Python's payload and signature byte for byte")
    func workedExample() throws {
        let license = try Self.exampleLicenseValue()
        #expect(String(decoding: license.canonicalPayload, as: UTF8.self) == Self.examplePayload)
        #expect(try LicenseIssuer.sign(license, secretKey: Self.exampleSecretKey) == Self.exampleLicense)
        #expect(try Self.exampleVerifier.verify(Self.exampleLicense, now: Self.exampleNow) == license)
    }

    @Test("a license round-trips through sign and verify, with every field")
    func roundTrip() throws {
        var pair = Ed25519.generate()
        defer { Ed25519.wipe(&pair.secretKey) }
        let issued = Date(timeIntervalSince1970: 1_750_000_000.75)
        let license = try License(
            ownerName: "Zoë \"Z\" O'Brien \\ 株式会社", ownerEmail: "zoe+licenses@example.co.uk", tier: .indie, seats: 1,
            issuedAt: issued, expiresAt: issued.addingTimeInterval(86_400), instance: "prod-eu-1")
        #expect(license.issuedAt == Date(timeIntervalSince1970: 1_750_000_000))
        let string = try LicenseIssuer.sign(license, secretKey: pair.secretKey)
        #expect(string.hasPrefix("MB1.") && string.split(separator: ".").count == 3)
        let verifier = try LicenseVerifier(publicKeyHex: ByteEncoding.hex(pair.publicKey))
        let verified = try verifier.verify(string, now: issued.addingTimeInterval(60), instanceID: "prod-eu-1")
        #expect(verified == license)
        #expect(verified.ownerName == "Zoë \"Z\" O'Brien \\ 株式会社")
        // Surrounding whitespace from copy and paste is ignored.
        #expect(try verifier.verify("  \(string)\r\n", now: issued, instanceID: "prod-eu-1") == license)
    }

    @Test("the canonical payload sorts keys, omits absent optionals and escapes only what JSON requires")
    func canonicalPayload() throws {
        let license = try License(
            id: "00000000-0000-4000-8000-000000000000", ownerName: "a\"b\\c/é", ownerEmail: "x@y.z", tier: .indie, seats: 100_000,
            issuedAt: Date(timeIntervalSince1970: 0))
        #expect(
            String(decoding: license.canonicalPayload, as: UTF8.self)
                == #"{"id":"00000000-0000-4000-8000-000000000000","issued_at":"1970-01-01T00:00:00Z","owner_email":"x@y.z","owner_name":"a\"b\\c/é","seats":100000,"tier":"indie"}"#
        )
        #expect(License.fieldNames == License.fieldNames.sorted())
    }

    @Test("timestamps are RFC 3339 UTC in whole seconds, with real calendar rules")
    func timestamps() {
        let formatter = ISO8601DateFormatter()
        var generator = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let date = Date(timeIntervalSince1970: TimeInterval(Int64.random(in: 0...253_402_300_799, using: &generator)))
            #expect(License.formatTimestamp(date) == formatter.string(from: date))
            #expect(License.parseTimestamp(License.formatTimestamp(date)) == date)
        }
        #expect(License.parseTimestamp("2000-02-29T00:00:00Z") != nil)
        #expect(License.parseTimestamp("2024-02-29T23:59:59Z") != nil)
        for bad in [
            "2100-02-29T00:00:00Z", "2025-02-29T00:00:00Z", "2025-04-31T00:00:00Z", "2025-13-01T00:00:00Z",
            "2025-06-01T24:00:00Z", "2025-06-01T12:60:00Z", "2025-06-01T12:00:60Z", "2025-06-01t12:00:00z",
            "2025-06-01T12:00:00+00:00", "2025-06-01T12:00:00.5Z", "2025-06-01 12:00:00Z", "1969-12-31T23:59:59Z", "+025-06-01T12:00:00Z", "",
        ] {
            #expect(License.parseTimestamp(bad) == nil, "\(bad)")
        }
    }

    // MARK: Refusals

    @Test("a tampered payload is refused as a bad signature: a flipped byte, and an edited field re-encoded")
    func tampered() throws {
        let parts = Self.exampleLicense.split(separator: ".").map(String.init)
        var payload = ByteEncoding.fromBase64URL(parts[1])!
        payload[40] ^= 0x01
        let flipped = "MB1.\(ByteEncoding.base64URL(payload)).\(parts[2])"
        #expect(throws: LicenseError.badSignature) { try Self.exampleVerifier.verify(flipped, now: Self.exampleNow) }

        let edited = Self.examplePayload.replacingOccurrences(of: #""seats":20"#, with: #""seats":2000"#)
        #expect(edited != Self.examplePayload)
        let reencoded = "MB1.\(ByteEncoding.base64URL(Array(edited.utf8))).\(parts[2])"
        #expect(throws: LicenseError.badSignature) { try Self.exampleVerifier.verify(reencoded, now: Self.exampleNow) }

        var signature = ByteEncoding.fromBase64URL(parts[2])!
        signature[63] ^= 0x80
        let badSignature = "MB1.\(parts[1]).\(ByteEncoding.base64URL(signature))"
        #expect(throws: LicenseError.badSignature) { try Self.exampleVerifier.verify(badSignature, now: Self.exampleNow) }
    }

    @Test("a license signed by another key is refused with the message naming the configured key")
    func otherKey() throws {
        var other = Ed25519.generate()
        defer { Ed25519.wipe(&other.secretKey) }
        let string = try LicenseIssuer.sign(try Self.exampleLicenseValue(), secretKey: other.secretKey)
        let error = #expect(throws: LicenseError.self) { try Self.exampleVerifier.verify(string, now: Self.exampleNow) }
        #expect(error == .badSignature)
        #expect(error?.description == "license signature does not verify with the configured public key")
    }

    @Test("an expired license is refused with its expiry; one issued more than 5 minutes ahead is not yet valid")
    func times() throws {
        let expiry = License.parseTimestamp("2030-12-31T23:59:59Z")!
        #expect(throws: LicenseError.expired(expiry)) { try Self.exampleVerifier.verify(Self.exampleLicense, now: expiry) }
        #expect(throws: LicenseError.expired(expiry)) { try Self.exampleVerifier.verify(Self.exampleLicense, now: expiry.addingTimeInterval(3600)) }
        #expect(try Self.exampleVerifier.verify(Self.exampleLicense, now: expiry.addingTimeInterval(-1)).seats == 20)
        #expect(LicenseError.expired(expiry).description.contains("2030-12-31T23:59:59Z"))

        let issued = License.parseTimestamp("2025-06-01T09:30:00Z")!
        #expect(throws: LicenseError.notYetValid) { try Self.exampleVerifier.verify(Self.exampleLicense, now: issued.addingTimeInterval(-301)) }
        #expect(try Self.exampleVerifier.verify(Self.exampleLicense, now: issued.addingTimeInterval(-299)).tier == .commercial)
    }

    @Test("malformed licenses are refused with .malformed naming the problem")
    func malformed() {
        let valid = Self.examplePayload
        func payload(replacing old: String, with new: String) -> String {
            precondition(valid.contains(old))
            return Self.signed(valid.replacingOccurrences(of: old, with: new))
        }
        let signature = String(Self.exampleLicense.split(separator: ".")[2])
        let cases: [(String, String, String)] = [
            ("empty", "", "the license is empty"),
            ("whitespace only", " \n", "the license is empty"),
            ("wrong prefix", "MB2" + Self.exampleLicense.dropFirst(3), "starts with \"MB1.\""),
            ("no prefix", "eyJpZCI6MX0.abc.def", "starts with \"MB1.\""),
            ("two parts", "MB1." + Self.exampleLicense.split(separator: ".")[1], "expected 3 parts separated by dots (MB1.<payload>.<signature>), found 2"),
            ("four parts", Self.exampleLicense + ".x", "found 4"),
            ("empty payload", "MB1..\(signature)", "the payload part is empty"),
            ("bad base64", "MB1.e*J9.\(signature)", "the payload part is not base64url"),
            ("padded base64", "MB1.e30=.\(signature)", "the payload part is not base64url"),
            ("standard base64 alphabet", "MB1.+/+/.\(signature)", "the payload part is not base64url"),
            ("non-canonical base64 tail", "MB1.e31.\(signature)", "the payload part is not base64url"),
            ("short signature", "MB1.e30.AAAA", "the signature part holds 3 bytes instead of 64"),
            ("too long", "MB1." + String(repeating: "A", count: 8200) + ".AA", "longer than 8 KiB"),
            ("non-JSON", Self.signed("seats=20; tier=commercial"), "the payload is not a JSON object"),
            ("truncated JSON", Self.signed(String(valid.dropLast())), "the payload is not valid JSON: expected ',' or '}'"),
            ("JSON array", Self.signed("[1,2]"), "not a JSON object"),
            ("trailing data", Self.signed(valid + "{}"), "unexpected data after the JSON object"),
            ("invalid UTF-8", Self.signed([0x7B, 0xFF, 0x7D]), "not valid UTF-8"),
            ("missing seats", payload(replacing: #","seats":20"#, with: ""), "missing field \"seats\""),
            ("missing id", payload(replacing: #""id":"0b6d3c52-3f0e-4c1e-9a57-2f1d2a4c7e90","#, with: ""), "missing field \"id\""),
            ("seats 0", payload(replacing: #""seats":20"#, with: #""seats":0"#), "seats must be between 1 and 100000, found 0"),
            ("seats 100001", payload(replacing: #""seats":20"#, with: #""seats":100001"#), "seats must be between 1 and 100000, found 100001"),
            ("seats negative", payload(replacing: #""seats":20"#, with: #""seats":-3"#), "found -3"),
            ("seats huge", payload(replacing: #""seats":20"#, with: #""seats":99999999999999999999999"#), "seats must be between 1 and 100000"),
            ("seats fraction", payload(replacing: #""seats":20"#, with: #""seats":20.0"#), "seats must be a whole number, found 20.0"),
            ("seats string", payload(replacing: #""seats":20"#, with: #""seats":"20""#), "field \"seats\" must be a number, found a string"),
            ("seats boolean", payload(replacing: #""seats":20"#, with: #""seats":true"#), "found a boolean"),
            ("tier gold", payload(replacing: #""tier":"commercial""#, with: #""tier":"gold""#), "tier must be \"indie\" or \"commercial\", found \"gold\""),
            ("tier upper case", payload(replacing: #""tier":"commercial""#, with: #""tier":"COMMERCIAL""#), "found \"COMMERCIAL\""),
            ("bad email", payload(replacing: "ops@acme.example", with: "ops-at-acme"), "owner_email \"ops-at-acme\" is not an email address"),
            ("email with space", payload(replacing: "ops@acme.example", with: "ops @acme.example"), "owner_email"),
            ("email without dot", payload(replacing: "ops@acme.example", with: "ops@localhost"), "owner_email"),
            ("two at signs", payload(replacing: "ops@acme.example", with: "a@b@acme.example"), "owner_email"),
            ("id upper case", payload(replacing: "0b6d3c52", with: "0B6D3C52"), "id must be a lowercase UUID"),
            ("id not a UUID", payload(replacing: "0b6d3c52-3f0e-4c1e-9a57-2f1d2a4c7e90", with: "license-1"), "id must be a lowercase UUID"),
            ("name with escape", payload(replacing: "Acme GmbH", with: #"Acme\u001b[31m"#), "owner_name contains the control character U+001B"),
            ("name with bidi override", payload(replacing: "Acme GmbH", with: "Acme\u{202E}HbmG"), "U+202E"),
            ("bad issued_at", payload(replacing: "2025-06-01T09:30:00Z", with: "2025-06-01"), "issued_at must be an RFC 3339 UTC time"),
            ("impossible date", payload(replacing: "2030-12-31T23:59:59Z", with: "2030-02-30T00:00:00Z"), "expires_at must be an RFC 3339 UTC time"),
            ("expires before issued", payload(replacing: "2030-12-31T23:59:59Z", with: "2025-06-01T09:30:00Z"), "must be after issued_at"),
            ("null expiry", payload(replacing: #""2030-12-31T23:59:59Z""#, with: "null"), "field \"expires_at\" must be a string, found null; leave the field out instead"),
            ("bad instance", payload(replacing: #""issued_at""#, with: #""instance":"has space","issued_at""#), "instance must be 1 to 128"),
            ("empty instance", payload(replacing: #""issued_at""#, with: #""instance":"","issued_at""#), "instance must be 1 to 128"),
            ("unknown field", payload(replacing: #""seats":20"#, with: #""admin":true,"seats":20"#), "unknown field \"admin\""),
            ("duplicate field", payload(replacing: #""seats":20"#, with: #""seats":20,"seats":2000"#), "field \"seats\" appears twice"),
            ("nested value", payload(replacing: #""seats":20"#, with: #""seats":{"n":[20]}"#), "found an object"),
            (
                "deep nesting", payload(replacing: #""seats":20"#, with: #""seats":"# + String(repeating: "[", count: 40) + String(repeating: "]", count: 40)),
                "nesting deeper than 16 levels"
            ),
            ("lone surrogate", payload(replacing: "Acme GmbH", with: #"\ud800"#), "unpaired surrogate"),
            ("whitespace", Self.signed(valid.replacingOccurrences(of: ",", with: ", ")), "not in canonical form"),
            ("keys out of order", payload(replacing: #""seats":20,"tier":"commercial""#, with: #""tier":"commercial","seats":20"#), "not in canonical form"),
            ("escaped slash", payload(replacing: "Acme GmbH", with: #"Acme\/GmbH"#), "not in canonical form"),
            ("unicode escape", payload(replacing: "Acme GmbH", with: #"\u0041cme GmbH"#), "not in canonical form"),
        ]
        for (name, license, expected) in cases {
            let problem = Self.malformedProblem(license)
            #expect(problem?.contains(expected) == true, "\(name): \(problem ?? "accepted")")
        }
    }

    @Test("an instance binding must match the instance id the kernel passes")
    func instanceBinding() throws {
        let issued = Date()
        let bound = try License(ownerEmail: "ops@acme.example", tier: .commercial, seats: 5, issuedAt: issued, instance: "prod-eu-1")
        let string = try LicenseIssuer.sign(bound, secretKey: Self.exampleSecretKey)
        let verifier = Self.exampleVerifier
        #expect(try verifier.verify(string, instanceID: "prod-eu-1") == bound)
        #expect(throws: LicenseError.wrongInstance) { try verifier.verify(string, instanceID: "prod-eu-2") }
        #expect(throws: LicenseError.wrongInstance) { try verifier.verify(string, instanceID: "PROD-EU-1") }
        #expect(throws: LicenseError.wrongInstance) { try verifier.verify(string) }
        #expect(try verifier.verifyIgnoringInstanceBinding(string).instance == "prod-eu-1")
        // An unbound license is valid on every instance.
        #expect(try verifier.verify(Self.exampleLicense, now: Self.exampleNow, instanceID: "anything").instance == nil)
    }

    @Test("a missing or invalid public key is refused before any license is read")
    func publicKeys() throws {
        #expect(throws: LicenseError.noPublicKey) { try LicenseVerifier(publicKeyHex: nil) }
        #expect(throws: LicenseError.noPublicKey) { try LicenseVerifier(publicKeyHex: "  ") }
        #expect(LicenseError.noPublicKey.description == "no license public key is configured: set [license] public_key or MELTYBASE_LICENSE_PUBLIC_KEY")
        for bad in [
            "abc", String(Self.examplePublicKey.dropLast()), Self.examplePublicKey + "00", String(repeating: "zz", count: 32),
            String(repeating: "0", count: 64), "01" + String(repeating: "0", count: 62),
        ] {
            #expect(throws: LicenseError.badPublicKey, "\(bad)") { try LicenseVerifier(publicKeyHex: bad) }
        }
        #expect(try LicenseVerifier(publicKeyHex: " \(Self.examplePublicKey.uppercased())\n").publicKey == ByteEncoding.fromHex(Self.examplePublicKey))
        #expect(Set([LicenseError.malformed("x"), .badSignature, .expired(Date()), .notYetValid, .wrongInstance, .noPublicKey, .badPublicKey].map(\.reasonCode)).count == 7)
    }

    @Test("2,000 random mutations of a valid license never crash and never verify")
    func mutations() {
        let original = Array(Self.exampleLicense.utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n\u{0}".utf8)
        var generator = SplitMix64(seed: 20_250_601)
        var reasons: [String: Int] = [:]
        for round in 0..<2000 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0..<max(bytes.count, 1), using: &generator)
                switch Int.random(in: 0..<7, using: &generator) {
                case 0 where !bytes.isEmpty: bytes[position] ^= UInt8.random(in: 1...255, using: &generator)
                case 1 where !bytes.isEmpty: bytes.remove(at: position)
                case 2: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                case 3 where !bytes.isEmpty: bytes[position] = alphabet.randomElement(using: &generator)!
                case 4: bytes = Array(bytes.prefix(position))
                case 5 where !bytes.isEmpty:
                    let end = min(bytes.count, position + Int.random(in: 1...40, using: &generator))
                    bytes.insert(contentsOf: bytes[position..<end], at: end)
                default:
                    let other = Int.random(in: 0..<max(bytes.count, 1), using: &generator)
                    if position < bytes.count, other < bytes.count { bytes.swapAt(position, other) }
                }
            }
            let mutant = String(decoding: bytes, as: UTF8.self)
            if mutant.trimmingCharacters(in: .whitespacesAndNewlines) == Self.exampleLicense { continue }
            do {
                let license = try Self.exampleVerifier.verify(mutant, now: Self.exampleNow)
                Issue.record("mutation \(round) verified: \(mutant) -> \(license)")
            } catch {
                reasons[error.reasonCode, default: 0] += 1
            }
        }
        #expect(Set(reasons.keys) == ["malformed", "bad_signature"], "\(reasons)")
    }

    @Test("2,000 random signed payloads never crash the payload reader, and only canonical ones decode")
    func payloadFuzz() {
        let tokens = [
            "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "d800", "dc00", "0", "1", "-", ".", "e", "true", "null", " ",
            "\"seats\"", "\"tier\"", "\"id\"", "20", "\"commercial\"", "é", "\u{0}", "\u{1b}",
        ]
        let valid = Self.examplePayload
        var generator = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            var text: String
            if Bool.random(using: &generator) {
                text = (0..<Int.random(in: 0...30, using: &generator)).map { _ in tokens.randomElement(using: &generator)! }.joined()
            } else {
                var pieces = valid.map(String.init)
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    pieces[Int.random(in: 0..<pieces.count, using: &generator)] = tokens.randomElement(using: &generator)!
                }
                text = pieces.joined()
            }
            if let license = try? License(payload: Array(text.utf8)) {
                #expect(license.canonicalPayload == Array(text.utf8))
            }
        }
    }

    // MARK: Key files and issuing

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mb-license-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func mode(_ path: String) -> mode_t {
        var status = stat()
        stat(path, &status)
        return status.st_mode & 0o7777
    }

    @Test("keygen writes a 0600 secret key and a 0644 public key, one hex line each, and never overwrites")
    func keyFiles() throws {
        let directory = try Self.temporaryDirectory() + "/vendor/keys"
        let files = try LicenseIssuer.generateKeyFiles(directory: directory)
        #expect(files.secretKeyPath == directory + "/license-signing.key")
        #expect(Self.mode(files.secretKeyPath) == 0o600)
        #expect(Self.mode(files.publicKeyPath) == 0o644)
        #expect(Self.mode(directory) == 0o700)
        let secret = try String(contentsOfFile: files.secretKeyPath, encoding: .utf8)
        #expect(secret.count == 129 && secret.hasSuffix("\n") && secret.dropLast().allSatisfy(\.isHexDigit))
        let publicKey = try String(contentsOfFile: files.publicKeyPath, encoding: .utf8)
        #expect(publicKey == files.publicKeyHex + "\n")
        #expect(secret.hasSuffix(files.publicKeyHex + "\n"))

        let error = #expect(throws: LicenseIssuerError.self) { try LicenseIssuer.generateKeyFiles(directory: directory) }
        #expect(error?.description.contains("already exists") == true)
        #expect(try String(contentsOfFile: files.secretKeyPath, encoding: .utf8) == secret)

        // Only the public file is left over: still refused, and no secret key is created.
        try FileManager.default.removeItem(atPath: files.secretKeyPath)
        #expect(throws: LicenseIssuerError.self) { try LicenseIssuer.generateKeyFiles(directory: directory) }
        #expect(!FileManager.default.fileExists(atPath: files.secretKeyPath))
    }

    @Test("issue signs with the key file, which must be 0600 or stricter and well formed")
    func issueWithKeyFile() throws {
        let directory = try Self.temporaryDirectory()
        let files = try LicenseIssuer.generateKeyFiles(directory: directory)
        let now = Date()
        let string = try LicenseIssuer.issue(
            secretKeyFile: files.secretKeyPath, ownerEmail: "ops@acme.example", ownerName: "Acme GmbH", tier: .commercial, seats: 20,
            expiresAt: now.addingTimeInterval(365 * 86_400), instance: nil, now: now)
        let license = try LicenseVerifier(publicKeyHex: files.publicKeyHex).verify(string, now: now)
        #expect(license.ownerEmail == "ops@acme.example" && license.seats == 20 && license.tier == .commercial)
        #expect(license.id.count == 36)

        func issue() throws(LicenseIssuerError) -> String {
            try LicenseIssuer.issue(secretKeyFile: files.secretKeyPath, ownerEmail: "a@b.cc", tier: .indie, seats: 1)
        }
        chmod(files.secretKeyPath, 0o640)
        #expect(#expect(throws: LicenseIssuerError.self) { try issue() }?.description.contains("has mode 0640") == true)
        chmod(files.secretKeyPath, 0o604)
        #expect(#expect(throws: LicenseIssuerError.self) { try issue() }?.description.contains("chmod 600") == true)
        chmod(files.secretKeyPath, 0o700)
        #expect(throws: LicenseIssuerError.self) { try issue() }
        chmod(files.secretKeyPath, 0o400)
        _ = try issue()
        chmod(files.secretKeyPath, 0o600)

        let expired = #expect(throws: LicenseIssuerError.self) {
            try LicenseIssuer.issue(secretKeyFile: files.secretKeyPath, ownerEmail: "a@b.cc", tier: .indie, seats: 1, expiresAt: now.addingTimeInterval(-1), now: now)
        }
        #expect(expired?.description.contains("is not in the future") == true)
        let seats = #expect(throws: LicenseIssuerError.self) {
            try LicenseIssuer.issue(secretKeyFile: files.secretKeyPath, ownerEmail: "a@b.cc", tier: .indie, seats: 0)
        }
        #expect(seats?.description == "cannot issue the license: seats must be between 1 and 100000, found 0")

        // The public key file, a damaged key and a missing file are each refused with a reason.
        let wrongFile = directory + "/copy.pub"
        try FileManager.default.copyItem(atPath: files.publicKeyPath, toPath: wrongFile)
        chmod(wrongFile, 0o600)
        #expect(
            #expect(throws: LicenseIssuerError.self) {
                try LicenseIssuer.issue(secretKeyFile: wrongFile, ownerEmail: "a@b.cc", tier: .indie, seats: 1)
            }?.description.contains("the size of a public key") == true)
        let damaged = directory + "/damaged.key"
        var text = try String(contentsOfFile: files.secretKeyPath, encoding: .utf8)
        text = String(text.prefix(127)) + (text.dropLast().last == "0" ? "1" : "0") + "\n"
        _ = FileManager.default.createFile(atPath: damaged, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        #expect(
            #expect(throws: LicenseIssuerError.self) {
                try LicenseIssuer.issue(secretKeyFile: damaged, ownerEmail: "a@b.cc", tier: .indie, seats: 1)
            }?.description.contains("damaged") == true)
        #expect(
            #expect(throws: LicenseIssuerError.self) {
                try LicenseIssuer.issue(secretKeyFile: directory + "/missing.key", ownerEmail: "a@b.cc", tier: .indie, seats: 1)
            }?.description.contains("cannot open the key file") == true)
    }

    // MARK: Interoperability

    static let pythonWithCryptography: Bool = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import cryptography.hazmat.primitives.asymmetric.ed25519"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    @Test(
        "an independent Python implementation verifies Swift's licenses and issues licenses Swift accepts",
        .enabled(if: pythonWithCryptography, "needs python3 with the cryptography package"))
    func python() throws {
        let script = """
            import base64, json, sys
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
            b64d = lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
            b64e = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
            canonical = lambda f: json.dumps(f, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            mode, key = sys.argv[1], bytes.fromhex(sys.argv[2])
            if mode == "verify":
                tag, p, s = sys.stdin.read().strip().split(".")
                assert tag == "MB1"
                payload = b64d(p)
                Ed25519PublicKey.from_public_bytes(key).verify(b64d(s), payload)
                assert canonical(json.loads(payload)) == payload
                print(json.loads(payload)["owner_name"])
            else:
                fields = {"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "owner_name": "Zoë \\"Z\\" \\\\ 株式会社", "owner_email": "zoe@example.org",
                          "tier": "indie", "seats": 3, "issued_at": "2025-06-01T00:00:00Z", "instance": "prod-1"}
                payload = canonical(fields)
                print("MB1." + b64e(payload) + "." + b64e(Ed25519PrivateKey.from_private_bytes(key[:32]).sign(payload)))
            """
        func python(_ arguments: [String], stdin: String = "") throws -> (Int32, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", script] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging(["PYTHONIOENCODING": "utf-8"]) { $1 }
            let output = Pipe(), input = Pipe()
            process.standardOutput = output
            process.standardInput = input
            try process.run()
            // A few hundred bytes: they fit in the pipe buffer whatever the child does.
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines))
        }

        let name = "Ünïcödé \"quoted\" \\ back / slash 名前"
        let license = try License(
            ownerName: name, ownerEmail: "ops@acme.example", tier: .commercial, seats: 7, issuedAt: Date(),
            expiresAt: Date().addingTimeInterval(3600), instance: "node-a:1")
        let string = try LicenseIssuer.sign(license, secretKey: Self.exampleSecretKey)
        let verified = try python(["verify", Self.examplePublicKey], stdin: string)
        #expect(verified.0 == 0 && verified.1 == name, "\(verified)")

        let issued = try python(["issue", ByteEncoding.hex(Self.exampleSecretKey)])
        #expect(issued.0 == 0)
        let fromPython = try Self.exampleVerifier.verify(issued.1, now: License.parseTimestamp("2025-06-02T00:00:00Z")!, instanceID: "prod-1")
        #expect(fromPython.ownerName == "Zoë \"Z\" \\ 株式会社" && fromPython.seats == 3 && fromPython.tier == .indie)
    }
}

/// A small seeded generator, so that every random test run is reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
