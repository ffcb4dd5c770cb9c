/// A QR code (ISO/IEC 18004) for a short text: byte mode (UTF-8), error correction level M,
/// versions 1 to 10 (up to 213 bytes), the mask with the lowest penalty of all eight.
/// It draws TOTP enrolment URIs as SVG on the server: the Studio's admin enrolment and the
/// Database plugin's GoTrue-compatible `/auth/v1/factors` both use it.
public struct QRCode: Sendable {
    /// The text needs more than version 10 holds.
    public struct TextTooLong: Error, CustomStringConvertible {
        /// UTF-8 bytes of the text.
        public let bytes: Int
        /// The most bytes a QR code up to version 10 at level M holds.
        public let capacity: Int

        /// What went wrong, with both numbers.
        public var description: String {
            "text too long for a QR code up to version \(QRCode.maxVersion) (\(bytes) bytes, at most \(capacity))"
        }
    }

    /// The largest version drawn (57 x 57 modules).
    public static let maxVersion = 10

    /// Version 1...10 (the smallest that holds the text).
    public let version: Int
    /// Mask pattern 0...7 applied to the data modules.
    public let mask: Int
    /// Modules per side: `version * 4 + 17`.
    public let size: Int
    /// `modules[y][x]` is true for a dark module.
    private let modules: [[Bool]]

    /// Encodes `text`; `mask` (0...7) forces a mask instead of the lowest-penalty one.
    /// Throws `TextTooLong` when the text needs more than version 10.
    public init(text: String, mask forcedMask: Int? = nil) throws(TextTooLong) {
        let bytes = Array(text.utf8)
        var version = 1
        while version <= Self.maxVersion && Self.capacity(version) < bytes.count { version += 1 }
        guard version <= Self.maxVersion else {
            throw TextTooLong(bytes: bytes.count, capacity: Self.capacity(Self.maxVersion))
        }
        let codewords = Self.withErrorCorrection(Self.dataCodewords(bytes, version: version), version: version)
        func drawn(_ mask: Int) -> Matrix {
            var matrix = Matrix(version: version)
            matrix.drawCodewords(codewords)
            matrix.applyMask(mask)
            matrix.drawFormat(mask)
            return matrix
        }
        // The forced mask, or the one of all eight with the lowest penalty (the first on a tie).
        var best = (mask: forcedMask ?? 0, matrix: drawn(forcedMask ?? 0))
        if forcedMask == nil {
            var bestScore = best.matrix.penalty()
            for mask in 1..<8 {
                let matrix = drawn(mask)
                let score = matrix.penalty()
                if score < bestScore { (bestScore, best) = (score, (mask, matrix)) }
            }
        }
        self.version = version
        self.mask = best.mask
        self.size = best.matrix.size
        self.modules = best.matrix.dark
    }

    /// Whether the module at column `x`, row `y` (0-based, inside the code) is dark.
    public func isDark(x: Int, y: Int) -> Bool {
        modules[y][x]
    }

    /// A standalone SVG document: a white background, the dark modules as one `<path>` of unit
    /// squares offset by the quiet zone, `moduleSize` pixels per module for width and height.
    /// Colours are named (no `#`), so the document stays valid in an unencoded data URL.
    /// With `label`, the image is announced (`role="img"`, `aria-label`); `className` sets
    /// `class` (both XML-escaped). Without them the document is exactly GoTrue's shape.
    public func svg(moduleSize: Int = 3, quietZone: Int = 4, label: String? = nil, className: String? = nil) -> String {
        let full = size + 2 * quietZone
        let pixels = full * moduleSize
        var path = ""
        for y in 0..<size {
            for x in 0..<size where modules[y][x] {
                path += "M\(x + quietZone),\(y + quietZone)h1v1h-1z"
            }
        }
        var attributes = ""
        if let label { attributes += " role=\"img\" aria-label=\"\(Self.escaped(label))\"" }
        if let className { attributes += " class=\"\(Self.escaped(className))\"" }
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(pixels)\" height=\"\(pixels)\""
            + " viewBox=\"0 0 \(full) \(full)\" shape-rendering=\"crispEdges\"\(attributes)>"
            + "<rect width=\"\(full)\" height=\"\(full)\" fill=\"white\"/>"
            + "<path d=\"\(path)\" fill=\"black\"/></svg>"
    }

    /// `text` safe inside a double-quoted XML attribute.
    private static func escaped(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            default: output.append(character)
            }
        }
        return output
    }
}

// MARK: - Capacity and codewords

extension QRCode {
    /// Error-correction codewords per block at level M, by version 1...10.
    private static let eccPerBlock = [0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26]
    /// Blocks at level M, by version 1...10.
    private static let blockCounts = [0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5]

    /// Modules available for data and error correction in a version (function patterns excluded).
    private static func rawDataModules(_ version: Int) -> Int {
        var result = (16 * version + 128) * version + 64
        if version >= 2 {
            let align = version / 7 + 2
            result -= (25 * align - 10) * align - 55
            if version >= 7 { result -= 36 }
        }
        return result
    }

    /// Data codewords (bytes) a version holds at level M.
    private static func dataCodewordCount(_ version: Int) -> Int {
        rawDataModules(version) / 8 - eccPerBlock[version] * blockCounts[version]
    }

    /// Bytes a version holds in byte mode: mode (4 bits) and count (8 or 16 bits) come first.
    public static func capacity(_ version: Int) -> Int {
        (dataCodewordCount(version) * 8 - 4 - (version < 10 ? 8 : 16)) / 8
    }

    /// Mode, count, bytes, terminator and padding as the data codewords of `version`.
    private static func dataCodewords(_ bytes: [UInt8], version: Int) -> [UInt8] {
        var bits: [UInt8] = []
        func put(_ value: Int, _ length: Int) {
            for i in stride(from: length - 1, through: 0, by: -1) { bits.append(UInt8((value >> i) & 1)) }
        }
        put(0b0100, 4)
        put(bytes.count, version < 10 ? 8 : 16)
        for byte in bytes { put(Int(byte), 8) }
        let capacityBits = dataCodewordCount(version) * 8
        put(0, min(4, capacityBits - bits.count))
        put(0, (8 - bits.count % 8) % 8)
        var pad = 0xec
        while bits.count < capacityBits {
            put(pad, 8)
            pad ^= 0xec ^ 0x11
        }
        return stride(from: 0, to: bits.count, by: 8).map { start in
            bits[start..<start + 8].reduce(0) { ($0 << 1) | $1 }
        }
    }

    /// Splits the data into blocks, appends each block's error correction, and interleaves.
    private static func withErrorCorrection(_ data: [UInt8], version: Int) -> [UInt8] {
        let blockCount = blockCounts[version]
        let eccLength = eccPerBlock[version]
        let raw = rawDataModules(version) / 8
        let shortBlocks = blockCount - raw % blockCount
        let shortLength = raw / blockCount
        let divisor = reedSolomonDivisor(degree: eccLength)
        var blocks: [[UInt8]] = []
        var start = 0
        for i in 0..<blockCount {
            let length = shortLength - eccLength + (i < shortBlocks ? 0 : 1)
            var block = Array(data[start..<start + length])
            start += length
            let ecc = reedSolomonRemainder(block, divisor: divisor)
            if i < shortBlocks { block.append(0) }  // Placeholder, skipped when interleaving.
            blocks.append(block + ecc)
        }
        var result: [UInt8] = []
        for i in 0..<blocks[0].count {
            for (j, block) in blocks.enumerated() where i != shortLength - eccLength || j >= shortBlocks {
                result.append(block[i])
            }
        }
        return result
    }
}

// MARK: - Reed-Solomon over GF(256), polynomial x^8 + x^4 + x^3 + x^2 + 1

extension QRCode {
    /// The product of two field elements.
    private static func fieldMultiply(_ x: UInt8, _ y: UInt8) -> UInt8 {
        var z = 0
        for i in stride(from: 7, through: 0, by: -1) {
            z = (z << 1) ^ ((z >> 7) * 0x11d)
            z ^= ((Int(y) >> i) & 1) * Int(x)
        }
        return UInt8(z & 0xff)
    }

    /// The generator polynomial of `degree` (leading coefficient omitted).
    private static func reedSolomonDivisor(degree: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: degree)
        result[degree - 1] = 1
        var root: UInt8 = 1
        for _ in 0..<degree {
            for j in 0..<result.count {
                result[j] = fieldMultiply(result[j], root)
                if j + 1 < result.count { result[j] ^= result[j + 1] }
            }
            root = fieldMultiply(root, 0x02)
        }
        return result
    }

    /// The error-correction codewords of `data`: its remainder by `divisor`.
    private static func reedSolomonRemainder(_ data: [UInt8], divisor: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: divisor.count)
        for byte in data {
            let factor = byte ^ result.removeFirst()
            result.append(0)
            for (i, coefficient) in divisor.enumerated() { result[i] ^= fieldMultiply(coefficient, factor) }
        }
        return result
    }
}

// MARK: - The module matrix

extension QRCode {
    /// The modules of one version while it is drawn: function patterns, then data, mask and format.
    private struct Matrix {
        let version: Int
        let size: Int
        /// `dark[y][x]`.
        var dark: [[Bool]]
        /// `isFunction[y][x]`: finder, timing, alignment, format or version modules (never masked).
        var isFunction: [[Bool]]

        /// A matrix with its function patterns drawn (format bits for mask 0 as placeholders).
        init(version: Int) {
            self.version = version
            size = version * 4 + 17
            dark = Array(repeating: Array(repeating: false, count: size), count: size)
            isFunction = dark
            drawFunctionPatterns()
        }

        /// Sets a module and marks it as part of a function pattern.
        private mutating func setFunction(_ x: Int, _ y: Int, _ isDark: Bool) {
            dark[y][x] = isDark
            isFunction[y][x] = true
        }

        /// Centre coordinates of the alignment patterns (both axes) of a version.
        private static func alignmentPositions(_ version: Int) -> [Int] {
            if version == 1 { return [] }
            let count = version / 7 + 2
            let step = (version * 8 + count * 3 + 5) / (count * 4 - 4) * 2
            var result = [6]
            var position = version * 4 + 10
            while result.count < count {
                result.insert(position, at: 1)
                position -= step
            }
            return result
        }

        /// Timing lines, the three finders with separators, alignment patterns, format and version bits.
        private mutating func drawFunctionPatterns() {
            for i in 0..<size {
                setFunction(6, i, i % 2 == 0)
                setFunction(i, 6, i % 2 == 0)
            }
            for (cx, cy) in [(3, 3), (size - 4, 3), (3, size - 4)] {
                for dy in -4...4 {
                    for dx in -4...4 {
                        let x = cx + dx
                        let y = cy + dy
                        let distance = max(abs(dx), abs(dy))
                        if x >= 0 && x < size && y >= 0 && y < size { setFunction(x, y, distance != 2 && distance != 4) }
                    }
                }
            }
            let positions = Self.alignmentPositions(version)
            let last = positions.count - 1
            for (i, cx) in positions.enumerated() {
                for (j, cy) in positions.enumerated() {
                    if (i == 0 && j == 0) || (i == 0 && j == last) || (i == last && j == 0) { continue }
                    for dy in -2...2 {
                        for dx in -2...2 { setFunction(cx + dx, cy + dy, max(abs(dx), abs(dy)) != 1) }
                    }
                }
            }
            drawFormat(0)
            if version >= 7 {
                var remainder = version
                for _ in 0..<12 { remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1f25) }
                let bits = (version << 12) | remainder
                for i in 0..<18 {
                    let isDark = (bits >> i) & 1 != 0
                    let a = size - 11 + i % 3
                    let b = i / 3
                    setFunction(a, b, isDark)
                    setFunction(b, a, isDark)
                }
            }
        }

        /// The 15 format bits (level M and `mask`, BCH-protected) in both copies, and the dark module.
        mutating func drawFormat(_ mask: Int) {
            let levelM = 0  // Level M's two bits in the format information.
            let data = (levelM << 3) | mask
            var remainder = data
            for _ in 0..<10 { remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537) }
            let bits = ((data << 10) | remainder) ^ 0x5412
            func bit(_ i: Int) -> Bool { (bits >> i) & 1 != 0 }
            for i in 0...5 { setFunction(8, i, bit(i)) }
            setFunction(8, 7, bit(6))
            setFunction(8, 8, bit(7))
            setFunction(7, 8, bit(8))
            for i in 9..<15 { setFunction(14 - i, 8, bit(i)) }
            for i in 0..<8 { setFunction(size - 1 - i, 8, bit(i)) }
            for i in 8..<15 { setFunction(8, size - 15 + i, bit(i)) }
            setFunction(8, size - 8, true)
        }

        /// Places the codewords' bits in the zigzag of column pairs, skipping function modules.
        mutating func drawCodewords(_ codewords: [UInt8]) {
            var i = 0
            var right = size - 1
            while right >= 1 {
                if right == 6 { right = 5 }
                for vertical in 0..<size {
                    for j in 0..<2 {
                        let x = right - j
                        let upward = (right + 1) & 2 == 0
                        let y = upward ? size - 1 - vertical : vertical
                        if !isFunction[y][x] && i < codewords.count * 8 {
                            dark[y][x] = (Int(codewords[i >> 3]) >> (7 - (i & 7))) & 1 != 0
                            i += 1
                        }
                    }
                }
                right -= 2
            }
        }

        /// Inverts the data modules where mask pattern `mask` says so.
        mutating func applyMask(_ mask: Int) {
            let rule: (Int, Int) -> Bool
            switch mask {
            case 0: rule = { x, y in (x + y) % 2 == 0 }
            case 1: rule = { _, y in y % 2 == 0 }
            case 2: rule = { x, _ in x % 3 == 0 }
            case 3: rule = { x, y in (x + y) % 3 == 0 }
            case 4: rule = { x, y in (x / 3 + y / 2) % 2 == 0 }
            case 5: rule = { x, y in (x * y) % 2 + (x * y) % 3 == 0 }
            case 6: rule = { x, y in ((x * y) % 2 + (x * y) % 3) % 2 == 0 }
            default: rule = { x, y in ((x + y) % 2 + (x * y) % 3) % 2 == 0 }
            }
            for y in 0..<size {
                for x in 0..<size where !isFunction[y][x] && rule(x, y) { dark[y][x].toggle() }
            }
        }

        /// The standard's penalty: long runs, 2x2 blocks, finder-like patterns, dark balance.
        func penalty() -> Int {
            func at(_ x: Int, _ y: Int, _ vertical: Bool) -> Bool { vertical ? dark[x][y] : dark[y][x] }
            var score = 0
            let finderLike = [true, false, true, true, true, false, true, false, false, false, false]
            for vertical in [false, true] {
                for y in 0..<size {
                    var run = 1
                    for x in 1...size {
                        if x < size && at(x, y, vertical) == at(x - 1, y, vertical) {
                            run += 1
                        } else {
                            if run >= 5 { score += 3 + (run - 5) }
                            run = 1
                        }
                    }
                    var x = 0
                    while x + 11 <= size {
                        var forward = true
                        var backward = true
                        for k in 0..<11 {
                            let isDark = at(x + k, y, vertical)
                            if isDark != finderLike[k] { forward = false }
                            if isDark != finderLike[10 - k] { backward = false }
                        }
                        if forward { score += 40 }
                        if backward { score += 40 }
                        x += 1
                    }
                }
            }
            var darkCount = 0
            for y in 0..<size {
                for x in 0..<size {
                    if dark[y][x] { darkCount += 1 }
                    if x + 1 < size && y + 1 < size {
                        let colour = dark[y][x]
                        if colour == dark[y][x + 1] && colour == dark[y + 1][x] && colour == dark[y + 1][x + 1] { score += 3 }
                    }
                }
            }
            let total = size * size
            let imbalance = abs(darkCount * 20 - total * 10)
            score += ((imbalance + total - 1) / total - 1) * 10
            return score
        }
    }
}
