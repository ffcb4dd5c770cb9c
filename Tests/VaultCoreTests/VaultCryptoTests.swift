import Foundation
import MeltyJSON
import Testing
import VaultCore

/// The Vault's AES-256-GCM wrapper against NIST known answers, tamper detection of the
/// envelope, and master-key validation.
@Suite("Vault crypto: NIST AES-GCM vectors, tampering, master keys", .timeLimit(.minutes(3)))
struct VaultCryptoTests {
    struct Vector: CustomStringConvertible {
        let source: String
        let key, iv, plaintext, aad, ciphertext, tag: String
        var description: String { source }
    }

    /// AES-256 cases from the GCM specification (McGrew & Viega, test cases 13-18, as
    /// reproduced in NIST SP 800-38D validation) and NIST CAVP gcmEncryptExtIV256.rsp.
    static let vectors: [Vector] = [
        Vector(
            source: "GCM spec test case 13 (empty plaintext, no AAD)",
            key: String(repeating: "00", count: 32), iv: String(repeating: "00", count: 12), plaintext: "", aad: "", ciphertext: "",
            tag: "530f8afbc74536b9a963b4f1c4cb738b"),
        Vector(
            source: "GCM spec test case 14 (one zero block)",
            key: String(repeating: "00", count: 32), iv: String(repeating: "00", count: 12),
            plaintext: "00000000000000000000000000000000", aad: "",
            ciphertext: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919"),
        Vector(
            source: "GCM spec test case 15 (four blocks, no AAD)",
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", iv: "cafebabefacedbaddecaf888",
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            aad: "",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c"),
        Vector(
            source: "GCM spec test case 16 (60 bytes, 20 bytes of AAD)",
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", iv: "cafebabefacedbaddecaf888",
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
        Vector(
            source: "CAVP gcmEncryptExtIV256 [PTlen=0][AADlen=0] Count 0",
            key: "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4", iv: "516c33929df5a3284ff463d7",
            plaintext: "", aad: "", ciphertext: "", tag: "bdc1ac884d332457a1d2664f168c76f0"),
        Vector(
            source: "CAVP gcmEncryptExtIV256 [PTlen=128][AADlen=0] Count 0",
            key: "31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22", iv: "0d18e06c7c725ac9e362e1ce",
            plaintext: "2db5168e932556f8089a0622981d017d", aad: "",
            ciphertext: "fa4362189661d163fcd6a56d8bf0405a", tag: "d636ac1bbedd5cc3ee727dc2ab4a9489"),
        Vector(
            source: "CAVP gcmEncryptExtIV256 [PTlen=128][AADlen=128] Count 0",
            key: "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b", iv: "ac93a1a6145299bde902f21a",
            plaintext: "2d71bcfa914e4ac045b2aa60955fad24", aad: "1e0889016f67601c8ebea4943bc23ad6",
            ciphertext: "8995ae2e6df3dbf96fac7b7137bae67f", tag: "eca5aa77d51d4a0a14d9c51e1da474ab"),
    ]

    static func bytes(_ hex: String) -> [UInt8] { hex.isEmpty ? [] : VaultCrypto.fromHex(hex)! }

    @Test("NIST AES-256-GCM known answers: seal gives the ciphertext and tag, open gives the plaintext", arguments: vectors)
    func knownAnswers(_ vector: Vector) throws {
        let key = Self.bytes(vector.key)
        let plaintext = Self.bytes(vector.plaintext)
        let sealed = try key.withUnsafeBytes { keyBytes in
            try plaintext.withUnsafeBytes { try AESGCM.seal(key: keyBytes, nonce: Self.bytes(vector.iv), plaintext: $0, aad: Self.bytes(vector.aad)) }
        }
        #expect(VaultCrypto.hex(sealed.ciphertext) == vector.ciphertext)
        #expect(VaultCrypto.hex(sealed.tag) == vector.tag)
        let opened = try key.withUnsafeBytes { keyBytes in
            try sealed.ciphertext.withUnsafeBytes {
                try AESGCM.open(key: keyBytes, nonce: Self.bytes(vector.iv), ciphertext: $0, tag: sealed.tag, aad: Self.bytes(vector.aad))
            }
        }
        #expect(opened.withUnsafeBytes { VaultCrypto.hex(Array($0)) } == vector.plaintext)
    }

    @Test("A flipped bit anywhere in the record (format, nonce, ciphertext, tag) or in the AAD fails cleanly")
    func tamperingFails() throws {
        let key = SecretBytes.random(count: 32)
        let aad = Envelope.secretAAD(portal: "acme", name: "STRIPE_KEY", version: 3)
        let record = try Array("sk_live_tamper_canary".utf8).withUnsafeBytes { try Envelope.seal(key: key, plaintext: $0, aad: aad) }
        #expect(try Envelope.open(key: key, record: record, aad: aad).utf8String() == "sk_live_tamper_canary")
        for index in record.indices {
            for bit in [0, 7] {
                var flipped = record
                flipped[index] ^= UInt8(1 << bit)
                #expect(throws: VaultError.self) { try Envelope.open(key: key, record: flipped, aad: aad) }
                if index > 0 {
                    #expect(throws: VaultError.authenticationFailed) { try Envelope.open(key: key, record: flipped, aad: aad) }
                }
            }
        }
        for index in aad.indices {
            var flipped = aad
            flipped[index] ^= 1
            #expect(throws: VaultError.authenticationFailed) { try Envelope.open(key: key, record: record, aad: flipped) }
        }
        // Truncated records and a different key.
        #expect(throws: VaultError.self) { try Envelope.open(key: key, record: Array(record.prefix(20)), aad: aad) }
        #expect(throws: VaultError.authenticationFailed) { try Envelope.open(key: SecretBytes.random(count: 32), record: record, aad: aad) }
    }

    @Test("The AAD binds portal, name and version: a record moved anywhere else does not open")
    func aadBindsPlace() throws {
        let key = SecretBytes.random(count: 32)
        let record = try Array("value".utf8).withUnsafeBytes {
            try Envelope.seal(key: key, plaintext: $0, aad: Envelope.secretAAD(portal: "acme", name: "A", version: 1))
        }
        for (portal, name, version) in [("acme2", "A", 1), ("acme", "B", 1), ("acme", "A", 2), ("acm", "eA", 1)] {
            #expect(throws: VaultError.authenticationFailed) {
                try Envelope.open(key: key, record: record, aad: Envelope.secretAAD(portal: portal, name: name, version: version))
            }
        }
    }

    @Test("Every seal uses a fresh nonce")
    func freshNonces() throws {
        let key = SecretBytes.random(count: 32)
        let records = try (0..<200).map { _ in try Array("same".utf8).withUnsafeBytes { try Envelope.seal(key: key, plaintext: $0, aad: []) } }
        #expect(Set(records.map { VaultCrypto.hex($0[1...12]) }).count == 200)
    }

    @Test("Master keys: wrong length, bad hex, all zeros, loose file mode and unknown settings are refused, saying which")
    func masterKeyValidation() throws {
        let good = String(repeating: "ab", count: 32)
        let variable = VaultConfiguration.masterKeyVariable
        func refusal(_ config: [String: JSONValue], _ environment: [String: String]) -> String {
            do {
                _ = try VaultConfiguration(config: config, environment: environment)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(try VaultConfiguration(config: [:], environment: [variable: good]).keys.current.id.count == 16)
        #expect(refusal([:], [:]).contains("no master key"))
        #expect(refusal([:], [variable: "abcd"]).contains("must be 64 hex characters (32 bytes), found 4"))
        #expect(refusal([:], [variable: String(repeating: "ab", count: 31) + "zz"]).contains("is not hex: character 63"))
        #expect(refusal([:], [variable: String(repeating: "0", count: 64)]).contains("all zeros"))
        #expect(refusal(["master_key_fil": "/x"], [variable: good]).contains("unknown key; expected one of"))
        #expect(!refusal([:], [variable: String(repeating: "ab", count: 31) + "zz"]).contains("abab"))

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vault-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/master.key"
        FileManager.default.createFile(atPath: path, contents: Data((good + "\n").utf8), attributes: [.posixPermissions: 0o644])
        #expect(refusal(["master_key_file": .string(path)], [:]).contains("has mode 644; the master key file must be readable by its owner only"))
        chmod(path, 0o600)
        let fromFile = try VaultConfiguration(config: ["master_key_file": .string(path)], environment: [:])
        #expect(fromFile.keys.current.id == (try MasterKey.parse(hex: good, source: "test")).id)
        FileManager.default.createFile(atPath: path, contents: Data("short\n".utf8), attributes: [.posixPermissions: 0o600])
        #expect(refusal(["master_key_file": .string(path)], [:]).contains("must be 64 hex characters"))
        #expect(refusal(["master_key_file": .string(directory + "/missing")], [:]).contains("cannot be read"))
    }

    @Test("Secret names and values are validated")
    func rules() {
        #expect(throws: Never.self) { try SecretRules.validate(name: "STRIPE_KEY.live-1") }
        for bad in ["", "has space", "slash/name", "..", String(repeating: "a", count: 129), "ünicode"] {
            #expect(throws: VaultError.self) { try SecretRules.validate(name: bad) }
        }
        #expect(throws: VaultError.self) { try SecretRules.validate(valueLength: 0, maxBytes: 10) }
        #expect(throws: VaultError.self) { try SecretRules.validate(valueLength: 11, maxBytes: 10) }
        #expect(throws: Never.self) { try SecretRules.validate(description: "Stripe, live") }
        // Postgres keeps text only up to a NUL: refused, not stored cut short.
        #expect(throws: VaultError.self) { try SecretRules.validate(description: "abc\u{0}def") }
        #expect(throws: Never.self) { try SecretRules.validate(version: Int(Int32.max)) }
        // Found by schemathesis: ?version=1660022572233946 reached Postgres as an integer (503).
        for bad in [0, -1, Int(Int32.max) + 1, 1_660_022_572_233_946, Int.max] {
            #expect(throws: VaultError.self) { try SecretRules.validate(version: bad) }
        }
    }
}
