import Foundation

/// Finds the line on which a dotted key is defined in a TOML document.
///
/// TOMLKit reports positions for syntax errors only, so validation errors (unknown key,
/// wrong type) locate their key here: the locator follows `[table]` and `[[array]]`
/// headers and `key = value` lines, which covers the way `plugins.toml` is written.
struct TOMLKeyLocator {
    private var lines: [Int: [String]] = [:]
    private var firstLine: [String: Int] = [:]

    init(source: String) {
        var table: [String] = []
        var arrayCounters: [String: Int] = [:]
        for (index, raw) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[["), let end = line.range(of: "]]") {
                let name = String(line[line.index(line.startIndex, offsetBy: 2)..<end.lowerBound])
                let path = Self.splitKey(name)
                let joined = path.joined(separator: ".")
                let position = arrayCounters[joined, default: 0]
                arrayCounters[joined] = position + 1
                table = path + ["\(position)"]
                record(table, lineNumber)
                record(path, lineNumber)
            } else if line.hasPrefix("["), let end = line.firstIndex(of: "]") {
                table = Self.splitKey(String(line[line.index(after: line.startIndex)..<end]))
                record(table, lineNumber)
            } else if let equals = Self.assignmentIndex(line) {
                let key = Self.splitKey(String(line[..<equals]))
                record(table + key, lineNumber)
                // Inline tables: `per_client = { rate = 1, burst = 2 }`.
                let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("{") {
                    for part in value.dropFirst().dropLast().split(separator: ",") {
                        if let innerEquals = part.firstIndex(of: "=") {
                            record(table + key + Self.splitKey(String(part[..<innerEquals])), lineNumber)
                        }
                    }
                }
            }
        }
    }

    /// Line of `key` (dotted, array positions as numbers), or of the closest enclosing table.
    func line(of key: String) -> Int? {
        var path = key.split(separator: ".").map(String.init)
        while !path.isEmpty {
            if let line = firstLine[path.joined(separator: ".")] { return line }
            path.removeLast()
        }
        return nil
    }

    private mutating func record(_ path: [String], _ line: Int) {
        let key = path.joined(separator: ".")
        if firstLine[key] == nil { firstLine[key] = line }
    }

    private static func assignmentIndex(_ line: String) -> String.Index? {
        var inQuotes = false
        for index in line.indices {
            let character = line[index]
            if character == "\"" || character == "'" { inQuotes.toggle() }
            if character == "=" && !inQuotes { return index }
        }
        return nil
    }

    private static func splitKey(_ text: String) -> [String] {
        text.split(separator: ".").map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }
    }
}
