import Foundation

/// Times in query parameters (`from`, `to` of `/v1/hub/usage`; `since`, `until` of
/// `/v1/audit`): one strict parser, so every route takes the same forms.
enum TimeParameter {
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
        let year = UsageClock.calendar.component(.year, from: date)
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

}
