import Foundation

/// UTC hours, days and months for metering (the rollups' boundaries are UTC).
enum UsageClock {
    /// The UTC Gregorian calendar.
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? .current
        return calendar
    }()

    /// The start of the hour holding `date`.
    static func hour(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
    }

    /// The start of the month holding `date`.
    static func month(_ date: Date) -> Date {
        calendar.date(from: calendar.dateComponents([.year, .month], from: date)) ?? hour(date)
    }

    /// The start of the month after the one holding `date`.
    static func nextMonth(_ date: Date) -> Date {
        calendar.date(byAdding: .month, value: 1, to: month(date)) ?? date.addingTimeInterval(31 * 86400)
    }

    /// `2026-12-06T01:00:00Z`.
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        return formatter.string(from: date)
    }

    /// A date from ISO 8601 text: `2026-12-06`, `2026-12-06T01:00:00Z`, with fractional
    /// seconds or an offset; nil for anything else or a year outside 2000...9999.
    static func parse(_ text: String) -> Date? {
        guard text.count <= 40, hasISOShape(text) else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        var date: Date?
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds], [.withFullDate],
        ] {
            formatter.formatOptions = options
            if let parsed = formatter.date(from: text) {
                date = parsed
                break
            }
        }
        guard let date else { return nil }
        let year = calendar.component(.year, from: date)
        return (2000...9999).contains(year) ? date : nil
    }

    /// Whether `text` is `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with an
    /// offset of at most 14 hours (Foundation's parser takes `+99:99` too).
    static func hasISOShape(_ text: String) -> Bool {
        let pattern = #"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2})))?$"#
        guard let expression = try? NSRegularExpression(pattern: pattern),
            let match = expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text))
        else { return false }
        func group(_ index: Int) -> Int? { Range(match.range(at: index), in: text).flatMap { Int(text[$0]) } }
        if let hours = group(4), let minutes = group(5) { return hours <= 14 && minutes <= 59 }
        return true
    }

    /// The first instant of `YYYY-MM`, or nil.
    static func parseMonth(_ text: String) -> Date? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]), let month = Int(parts[1]),
            (2000...9999).contains(year), (1...12).contains(month)
        else { return nil }
        return calendar.date(from: DateComponents(year: year, month: month, day: 1))
    }
}
