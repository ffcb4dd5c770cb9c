/// Usage rows as CSV (RFC 4180): a header line, then `portal,period,metric,dimension,value`
/// per row, CRLF line ends. A field with a comma, quote or line break is quoted; one
/// starting with `=`, `+`, `-` or `@` gets a leading `'` so spreadsheets do not run it.
enum UsageCSV {
    /// The header line's fields.
    static let header = ["portal", "period", "metric", "dimension", "value"]

    /// The document.
    static func render(_ rows: [UsageStore.Row]) -> String {
        var text = header.joined(separator: ",") + "\r\n"
        for row in rows {
            text += [row.portal, row.period, row.metric, row.dimension, UsageNumber.text(row.value)].map(field).joined(separator: ",") + "\r\n"
        }
        return text
    }

    /// One field, guarded and quoted as needed.
    static func field(_ value: String) -> String {
        var text = value
        if let first = text.first, "=+-@".contains(first), Double(text) == nil { text = "'" + text }
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
