/// Rewrites a statement by token positions: each edit replaces a range of Unicode scalars,
/// so text inside string constants or comments is never touched by accident.
public struct SQLEdit: Sendable, Equatable {
    /// First scalar replaced (0-based).
    public var start: Int
    /// Scalar after the last one replaced (`start` for an insertion).
    public var end: Int
    /// The replacement text.
    public var replacement: String

    /// An edit replacing `start..<end` with `replacement`.
    public init(start: Int, end: Int, replacement: String) {
        self.start = start
        self.end = end
        self.replacement = replacement
    }

    /// Replaces `token` with `replacement`.
    public init(replacing token: SQLToken, with replacement: String) {
        self.init(start: token.start, end: token.end, replacement: replacement)
    }

    /// Inserts `text` before scalar `offset`.
    public static func insert(_ text: String, at offset: Int) -> SQLEdit { SQLEdit(start: offset, end: offset, replacement: text) }

    /// `sql` with `edits` applied (they must not overlap; applied from the end backwards).
    public static func apply(_ edits: [SQLEdit], to sql: String) -> String {
        var scalars = Array(sql.unicodeScalars)
        for edit in edits.sorted(by: { $0.start > $1.start }) {
            let start = max(0, min(edit.start, scalars.count))
            let end = max(start, min(edit.end, scalars.count))
            scalars.replaceSubrange(start..<end, with: Array(edit.replacement.unicodeScalars))
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
