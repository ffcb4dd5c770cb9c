import Crypto
import Foundation
import MeltyQR
import Testing

@Suite("QR codes: the symbol for known texts, its function patterns and format information, the SVG")
struct QRCodeTests {
    static let text = "otpauth://totp/MeltyBase:ada@example.com?secret=" + String(repeating: "JBSWY3DPEHPK3PXP", count: 20)

    /// (length of the `text` prefix, version, mask, SHA-256 of the module rows as "0"/"1"
    /// lines joined by "\n"). Produced by the Studio's former `qr.js`, whose symbols a real
    /// decoder (zxing-cpp) read back for each of these lengths (each fills its version at
    /// level M); the Swift encoder must draw the very same modules.
    static let golden: [(Int, Int, Int, String)] = [
        (1, 1, 2, "fd01cf331dafb3564520942666bc1ee8aef05bd6278108b96aa3412f401a8264"),
        (14, 1, 2, "f45a4d73c34279a2e48188c6281effcad304a071489d3eea63d02b1578706e3c"),
        (26, 2, 0, "c72aa43100e47c1fe5a58acc7160441a4f919d5d94b8d723f1f4b4bd342743ab"),
        (42, 3, 6, "92ffd97c47bcbe08628f7ecdf3304127e473a158c14ffc5d6ad70566d4a42bcf"),
        (62, 4, 2, "af7004ec4a7581e8f0b1f527df0af8589c53e1d02140eb2087af6c5959770078"),
        (84, 5, 6, "446cf7426095f25a069f14d1efbaec3dc74f0363ee5365d0b90400ca290941f1"),
        (106, 6, 4, "3af2949e7aec2bc563ad3eb3151e038cc091c5843f893cc55df8e0d404c33f23"),
        (122, 7, 1, "e6a34de043f0157094a17ade4880f3f842fc3f40ff7833729609c10e43d79e9c"),
        (152, 8, 1, "a6aceada45813ecc7452668ce34e97efa00f96d97c2fbb8a6893ebc22632983c"),
        (180, 9, 0, "9d285d60ebb52e9af3b53d874926e0e698420fa838d84b7a83e80e691ccb5264"),
        (213, 10, 6, "db30fd77319cf68e72433fb45c37b2be432ca18124cff6f21c8e58d6316fe721"),
    ]

    /// ISO/IEC 18004 table C.1: the 15 format bits (masked) of level M, by mask pattern.
    static let levelMFormat = [0x5412, 0x5125, 0x5E7C, 0x5B4B, 0x45F9, 0x40CE, 0x4F97, 0x4AA0]

    static func rows(_ code: QRCode) -> String {
        (0..<code.size).map { y in String((0..<code.size).map { code.isDark(x: $0, y: y) ? "1" : "0" }) }.joined(separator: "\n")
    }

    @Test("versions 1 to 10: the smallest version that holds the text, the lowest-penalty mask, and the known modules")
    func goldenSymbols() throws {
        for (length, version, mask, digest) in Self.golden {
            let code = try QRCode(text: String(Self.text.prefix(length)))
            #expect(code.version == version && code.mask == mask && code.size == version * 4 + 17, "length \(length)")
            let hash = SHA256.hash(data: Array(Self.rows(code).utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(hash == digest, "length \(length)")
            #expect(length == 1 || QRCode.capacity(version) == length, "each golden length but the first fills its version")
        }
        #expect(throws: QRCode.TextTooLong.self) { try QRCode(text: String(Self.text.prefix(214))) }
    }

    @Test("finder and timing patterns, the dark module, and level M format information naming the mask, in both copies")
    func structure() throws {
        for (length, _, _, _) in Self.golden {
            let code = try QRCode(text: String(Self.text.prefix(length)))
            let size = code.size
            // Finder patterns: a dark 7x7 ring, a light ring, a dark 3x3 centre, at three corners.
            for (left, top) in [(0, 0), (size - 7, 0), (0, size - 7)] {
                for dy in 0..<7 {
                    for dx in 0..<7 {
                        let ring = max(abs(dx - 3), abs(dy - 3))
                        #expect(code.isDark(x: left + dx, y: top + dy) == (ring != 2), "finder at \(left),\(top)")
                    }
                }
            }
            for i in 8..<(size - 8) {
                #expect(code.isDark(x: i, y: 6) == (i % 2 == 0) && code.isDark(x: 6, y: i) == (i % 2 == 0), "timing \(i)")
            }
            #expect(code.isDark(x: 8, y: size - 8), "the dark module")
            // Format bits, first copy around the top-left finder (bit 14 first)...
            var first = 0
            for i in 0...5 where code.isDark(x: 8, y: i) { first |= 1 << i }
            if code.isDark(x: 8, y: 7) { first |= 1 << 6 }
            if code.isDark(x: 8, y: 8) { first |= 1 << 7 }
            if code.isDark(x: 7, y: 8) { first |= 1 << 8 }
            for i in 9..<15 where code.isDark(x: 14 - i, y: 8) { first |= 1 << i }
            // ...and the second copy split between the other two finders.
            var second = 0
            for i in 0..<8 where code.isDark(x: size - 1 - i, y: 8) { second |= 1 << i }
            for i in 8..<15 where code.isDark(x: 8, y: size - 15 + i) { second |= 1 << i }
            #expect(first == Self.levelMFormat[code.mask] && second == first, "format of length \(length)")
        }
    }

    @Test("the SVG: one unit square per dark module inside a 4-module quiet zone, GoTrue's shape unless labelled")
    func svg() throws {
        let code = try QRCode(text: "otpauth://totp/MeltyBase:ada@example.com?secret=JBSWY3DPEHPK3PXP&issuer=MeltyBase")
        let svg = code.svg()
        let full = code.size + 8
        #expect(
            svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(full * 3)\" height=\"\(full * 3)\" viewBox=\"0 0 \(full) \(full)\" shape-rendering=\"crispEdges\">"))
        #expect(svg.hasSuffix("\" fill=\"black\"/></svg>") && !svg.contains("#") && !svg.contains("role="))
        var dark = 0
        for y in 0..<code.size { for x in 0..<code.size where code.isDark(x: x, y: y) { dark += 1 } }
        #expect(svg.components(separatedBy: "h1v1h-1z").count - 1 == dark)
        #expect(svg.contains("M4,4h1v1h-1z"), "the top-left finder's corner, offset by the quiet zone")
        let labelled = code.svg(label: "QR <\"&>", className: "qr")
        #expect(labelled.contains(" role=\"img\" aria-label=\"QR &lt;&quot;&amp;&gt;\" class=\"qr\">"))
    }
}
