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

    /// The first instant of `YYYY-MM`, or nil.
    static func parseMonth(_ text: String) -> Date? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let year = Int(parts[0]), let month = Int(parts[1]),
            (2000...9999).contains(year), (1...12).contains(month)
        else { return nil }
        return calendar.date(from: DateComponents(year: year, month: month, day: 1))
    }
}
