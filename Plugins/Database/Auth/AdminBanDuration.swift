import Foundation

/// `ban_duration` of the admin API: `"none"` (unban) or a Go duration string, parsed as
/// Go's `time.ParseDuration` does (GoTrue hands the value to it): `"24h"`, `"1h30m"`,
/// `"1.5h"`, `"90s"`, `"-1h"`, `"300ms"`. Every step is overflow-checked, so a hostile value
/// is refused instead of trapping.
enum AdminBanDuration {
    /// 2⁶³, Go's bound while accumulating (the magnitude of `Int64.min`).
    private static let bound: UInt64 = 1 << 63

    /// Nanoseconds per unit, as Go's `unitMap` (`µs` is U+00B5, `μs` U+03BC).
    private static let units: [String: UInt64] = [
        "ns": 1, "us": 1_000, "\u{00B5}s": 1_000, "\u{03BC}s": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
        "m": 60_000_000_000, "h": 3_600_000_000_000,
    ]

    /// The duration in nanoseconds (`0` for `"none"`, which lifts a ban); throws a 400
    /// `validation_failed` naming the value when Go would refuse it or it overflows.
    static func nanoseconds(_ text: String) throws -> Int64 {
        if text == "none" { return 0 }
        guard let value = parse(text) else {
            let shown = text.count > 64 ? String(text.prefix(64)) + "…" : text
            throw AuthFailure(
                status: 400, code: "validation_failed",
                message:
                    "invalid format for ban duration: time: invalid duration \"\(shown)\" (use \"none\" or a Go duration such as \"24h\", \"1h30m\" or \"90s\", at most 2562047h)"
            )
        }
        return value
    }

    /// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `nil`.
    static func parse(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count <= 256 else { return nil }
        var index = 0
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        if bytes.count - index == 1, bytes[index] == UInt8(ascii: "0") { return 0 }
        if index == bytes.count { return nil }
        var total: UInt64 = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: ".") || isDigit(bytes[index]) else { return nil }
            // [0-9]*
            var whole: UInt64 = 0
            let wholeStart = index
            while index < bytes.count, isDigit(bytes[index]) {
                if whole > bound / 10 { return nil }
                whole = whole * 10 + UInt64(bytes[index] - UInt8(ascii: "0"))
                if whole > bound { return nil }
                index += 1
            }
            let hasWhole = index != wholeStart
            // (\.[0-9]*)?: digits past 2⁶³ only stop adding precision, as in Go.
            var fraction: UInt64 = 0
            var scale: Double = 1
            var hasFraction = false
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                var overflowed = false
                while index < bytes.count, isDigit(bytes[index]) {
                    let digit = UInt64(bytes[index] - UInt8(ascii: "0"))
                    index += 1
                    hasFraction = true
                    if overflowed { continue }
                    if fraction > (bound - 1) / 10 {
                        overflowed = true
                        continue
                    }
                    let next = fraction * 10 + digit
                    if next > bound {
                        overflowed = true
                        continue
                    }
                    fraction = next
                    scale *= 10
                }
            }
            if !hasWhole && !hasFraction { return nil }
            // The unit: everything up to the next digit or dot.
            let unitStart = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "."), !isDigit(bytes[index]) { index += 1 }
            guard index > unitStart, let unit = units[String(decoding: bytes[unitStart..<index], as: UTF8.self)] else { return nil }
            if whole > bound / unit { return nil }
            var value = whole * unit
            if fraction > 0 {
                let extra = Double(fraction) * (Double(unit) / scale)
                guard extra.isFinite, extra >= 0, extra < 1.8e19 else { return nil }
                let (sum, overflow) = value.addingReportingOverflow(UInt64(extra))
                if overflow || sum > bound { return nil }
                value = sum
            }
            let (sum, overflow) = total.addingReportingOverflow(value)
            if overflow || sum > bound { return nil }
            total = sum
        }
        if negative { return total == bound ? Int64.min : -Int64(total) }
        return total > UInt64(Int64.max) ? nil : Int64(total)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
