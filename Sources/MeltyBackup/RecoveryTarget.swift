import Foundation

/// The timestamps `meltybase backup restore --to` accepts and the ones it writes.
///
/// Accepted: `2026-12-06T01:02:03Z`, `2026-12-06 01:02:03.250+01:00`, `2026-12-06 01:02`,
/// `2026-12-06` (midnight); a `T` or a space between date and time; an optional fraction
/// of up to 9 digits; a zone `Z`, `UTC`, `+HH`, `+HHMM` or `+HH:MM`. No zone means UTC.
public enum RecoveryTarget {
    /// Parses `text`; nil when it is not one of the accepted forms or not a real date.
    public static func parse(_ text: String) -> Date? {
        let pattern = #"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)? ?(Z|UTC|[+-]\d{2}(?::?\d{2})?)?$"#
        guard let regex = try? NSRegularExpression(pattern: pattern),
            let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text))
        else { return nil }
        func group(_ index: Int) -> String? {
            guard let range = Range(match.range(at: index), in: text) else { return nil }
            return String(text[range])
        }
        guard let year = group(1).flatMap(Int.init), let month = group(2).flatMap(Int.init), let day = group(3).flatMap(Int.init) else { return nil }
        let hour = group(4).flatMap(Int.init) ?? 0
        let minute = group(5).flatMap(Int.init) ?? 0
        let second = group(6).flatMap(Int.init) ?? 0
        let fraction = group(7).flatMap { Double("0" + $0) } ?? 0
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second) else {
            return nil
        }
        var offsetSeconds = 0
        if let zone = group(8), zone != "Z", zone != "UTC" {
            let sign = zone.hasPrefix("-") ? -1 : 1
            let digits = zone.dropFirst().filter { $0 != ":" }
            guard let hours = Int(digits.prefix(2)), hours <= 14 else { return nil }
            let minutes = digits.count > 2 ? Int(digits.dropFirst(2)) ?? 99 : 0
            guard minutes < 60 else { return nil }
            offsetSeconds = sign * (hours * 3600 + minutes * 60)
        }
        var calendar = Calendar(identifier: .gregorian)
        guard let utc = TimeZone(identifier: "UTC") else { return nil }
        calendar.timeZone = utc
        let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        guard let date = calendar.date(from: components) else { return nil }
        // Reject dates the calendar rolled over (February 30th).
        let check = calendar.dateComponents([.year, .month, .day], from: date)
        guard check.year == year, check.month == month, check.day == day else { return nil }
        return date.addingTimeInterval(fraction - Double(offsetSeconds))
    }

    /// `date` for Postgres' `recovery_target_time`: `2026-12-06 01:02:03.250000+00`.
    public static func postgres(_ date: Date) -> String {
        let (base, micros) = split(date)
        return "\(base.replacingOccurrences(of: "T", with: " ")).\(micros)+00"
    }

    /// `date` in ISO 8601 UTC with microseconds: `2026-12-06T01:02:03.250000Z`.
    public static func iso8601(_ date: Date) -> String {
        let (base, micros) = split(date)
        return "\(base).\(micros)Z"
    }

    /// `yyyy-MM-ddTHH:mm:ss` and the six-digit microseconds of `date` (UTC).
    private static func split(_ date: Date) -> (String, String) {
        let totalMicros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var seconds = time_t(totalMicros >= 0 ? totalMicros / 1_000_000 : (totalMicros - 999_999) / 1_000_000)
        let micros = totalMicros - Int64(seconds) * 1_000_000
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let base =
            "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
        let microText = String(micros)
        return (base, String(repeating: "0", count: 6 - microText.count) + microText)
    }
}
