import Foundation
import MeltyTOTP
import Testing

@Suite("TOTP and base32: RFC 6238 and RFC 4648 vectors, the window and replays")
struct TOTPTests {
    @Test("the TOTP type reproduces RFC 6238 appendix B for SHA-1, SHA-256 and SHA-512")
    func rfc6238Vectors() {
        let keys: [(TOTP.Algorithm, [UInt8])] = [
            (.sha1, Array("12345678901234567890".utf8)), (.sha256, Array("12345678901234567890123456789012".utf8)),
            (.sha512, Array("1234567890123456789012345678901234567890123456789012345678901234".utf8)),
        ]
        let expected: [(Int64, [String])] = [
            (59, ["94287082", "46119246", "90693936"]),
            (1_111_111_109, ["07081804", "68084774", "25091201"]),
            (1_111_111_111, ["14050471", "67062674", "99943326"]),
            (1_234_567_890, ["89005924", "91819424", "93441116"]),
            (2_000_000_000, ["69279037", "90698825", "38618901"]),
            (20_000_000_000, ["65353130", "77737706", "47863826"]),
        ]
        for (time, codes) in expected {
            for (index, (algorithm, key)) in keys.enumerated() {
                let totp = TOTP(secret: key, digits: 8, algorithm: algorithm)
                #expect(totp.code(at: Date(timeIntervalSince1970: TimeInterval(time))) == codes[index], "T=\(time) \(algorithm)")
            }
        }
        // RFC 4226 appendix D: HOTP of the same SHA-1 key, 6 digits, counters 0 to 9.
        let hotp = TOTP(secret: Array("12345678901234567890".utf8))
        let rfc4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
        #expect((0..<10).map { hotp.code(step: Int64($0)) } == rfc4226)
    }

    @Test("a code matches within one step either side; with `after`, only later steps count (replays are refused)")
    func windowAndReplay() {
        let totp = TOTP(secret: TOTP.generateSecret())
        let now = Date()
        let step = totp.step(at: now)
        #expect(totp.matchingStep(totp.code(at: now.addingTimeInterval(-30)), at: now) == step - 1)
        #expect(totp.matchingStep(totp.code(at: now), at: now) == step)
        #expect(totp.matchingStep(totp.code(at: now.addingTimeInterval(30)), at: now) == step + 1)
        #expect(totp.matchingStep(totp.code(at: now.addingTimeInterval(90)), at: now) == nil)
        #expect(totp.matchingStep("12345", at: now) == nil)
        #expect(totp.matchingStep("12345a", at: now) == nil)
        #expect(totp.matchingStep(totp.code(at: now), at: now, after: step - 1) == step)
        #expect(totp.matchingStep(totp.code(at: now), at: now, after: step) == nil)
        #expect(totp.matchingStep(totp.code(at: now.addingTimeInterval(-30)), at: now, after: step - 1) == nil)
        #expect(TOTP.generateSecret().count == TOTP.secretLength)
    }

    @Test("base32 is RFC 4648's (upper case, no padding out, padding, spaces and dashes ignored in)")
    func base32() {
        let vectors = ["": "", "f": "MY", "fo": "MZXQ", "foo": "MZXW6", "foob": "MZXW6YQ", "fooba": "MZXW6YTB", "foobar": "MZXW6YTBOI"]
        for (plain, encoded) in vectors {
            #expect(Base32.encode(Array(plain.utf8)) == encoded)
            #expect(Base32.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base32.decode("mzxw-6ytb oi======") == Array("foobar".utf8))
        #expect(Base32.decode("MZXW1") == nil)
        let secret = TOTP.generateSecret()
        #expect(Base32.decode(Base32.encode(secret)) == secret)
    }

    @Test("the otpauth URI carries the issuer, the account and the base32 secret, percent-encoded")
    func provisioningURI() {
        let uri = TOTP.provisioningURI(secret: Array("foobar".utf8), account: "ada+1@example.com")
        #expect(uri == "otpauth://totp/MeltyBase:ada%2B1@example.com?secret=MZXW6YTBOI&issuer=MeltyBase")
    }
}
