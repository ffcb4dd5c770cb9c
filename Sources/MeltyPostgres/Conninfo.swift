import CLibPQ

/// Builds libpq conninfo strings from another one, overriding keys (dbname, user).
public enum Conninfo {
    /// `base` (key=value or URI) with `overrides` applied, as a key=value string.
    public static func derive(_ base: String, overrides: [String: String]) -> String {
        var options: [(String, String)] = []
        var error: UnsafeMutablePointer<CChar>?
        if let parsed = PQconninfoParse(base, &error) {
            var cursor = parsed
            while let keyword = cursor.pointee.keyword {
                if let value = cursor.pointee.val { options.append((String(cString: keyword), String(cString: value))) }
                cursor += 1
            }
            PQconninfoFree(parsed)
        }
        if let error { PQfreemem(error) }
        options.removeAll { overrides[$0.0] != nil }
        options += overrides.sorted { $0.key < $1.key }
        return options.map { "\($0.0)='\(escape($0.1))'" }.joined(separator: " ")
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
    }
}
