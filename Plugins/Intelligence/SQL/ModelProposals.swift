import Foundation
import MeltyJSON

/// Reads the statements out of a model's answer: a JSON object `{"fixes": [{"statement",
/// "reason"}]}` (possibly inside a code fence or after some prose), else fenced ```sql
/// blocks, else the whole answer when it reads like one statement.
enum ModelProposals {
    /// The proposals in `text`, each with its reason.
    static func parse(_ text: String) -> [(statement: String, reason: String)] {
        let text = String(text.prefix(200_000))
        if let start = text.firstIndex(of: "{"), let end = text.lastIndex(of: "}"), start < end,
            let object = JSONValue.object(json: Array(text[start...end].utf8))
        {
            let list = object["fixes"]?.arrayValue ?? object["statements"]?.arrayValue ?? []
            let found = list.compactMap { item -> (String, String)? in
                if let statement = item.stringValue { return (statement, "proposed by the model") }
                guard let statement = item.objectValue?["statement"]?.stringValue ?? item.objectValue?["sql"]?.stringValue else { return nil }
                return (statement, item.objectValue?["reason"]?.stringValue ?? "proposed by the model")
            }
            if let single = object["statement"]?.stringValue ?? object["sql"]?.stringValue { return found + [(single, object["reason"]?.stringValue ?? "proposed by the model")] }
            if !found.isEmpty { return found }
        }
        var blocks: [(String, String)] = []
        var remainder = Substring(text)
        while let open = remainder.range(of: "```") {
            let afterOpen = remainder[open.upperBound...]
            let bodyStart = afterOpen.firstIndex(of: "\n").map { afterOpen.index(after: $0) } ?? afterOpen.startIndex
            guard let close = afterOpen[bodyStart...].range(of: "```") else { break }
            let body = afterOpen[bodyStart..<close.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            if !body.isEmpty { blocks.append((body, "proposed by the model")) }
            remainder = afterOpen[close.upperBound...]
        }
        if !blocks.isEmpty { return blocks }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let first = trimmed.split(whereSeparator: { $0 == " " || $0 == "\n" }).first?.lowercased() ?? ""
        if ["select", "with", "insert", "update", "delete", "values"].contains(first) { return [(trimmed, "proposed by the model")] }
        return []
    }
}
