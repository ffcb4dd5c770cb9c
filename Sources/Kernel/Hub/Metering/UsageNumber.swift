import Foundation

/// How usage values are written in messages, JSON and CSV: integers without a fraction.
enum UsageNumber {
    /// `1000` for 1000.0, `0.5` for 0.5.
    static func text(_ value: Double) -> String {
        if value.isFinite, value == value.rounded(), abs(value) < 9e15 { return String(Int64(value)) }
        return String(value)
    }
}
