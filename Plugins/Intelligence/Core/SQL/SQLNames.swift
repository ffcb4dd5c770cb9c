import Foundation

/// Spelling identifiers the way a statement needs them.
public enum SQLNames {
    /// Keywords Postgres reserves (an identifier spelled like one must be quoted).
    public static let reserved: Set<String> = [
        "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast", "check", "collate", "column",
        "constraint", "create", "current_catalog", "current_date", "current_role", "current_time", "current_timestamp", "current_user", "default",
        "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in",
        "initially", "intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or",
        "order", "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric", "table", "then", "to", "trailing",
        "true", "union", "unique", "user", "using", "variadic", "when", "where", "window", "with", "join", "left", "right", "inner", "outer", "full",
        "cross", "natural", "is", "like", "ilike", "between", "similar", "verbose", "freeze", "notnull", "isnull", "overlaps", "tablesample",
    ]

    /// `name` as it must appear in a statement: bare when Postgres would fold it to itself,
    /// double-quoted otherwise (upper case, spaces, reserved words).
    public static func quoted(_ name: String) -> String {
        let scalars = Array(name.unicodeScalars)
        let plain =
            !scalars.isEmpty && !reserved.contains(name)
            && scalars.enumerated().allSatisfy { index, scalar in
                (scalar >= "a" && scalar <= "z") || scalar == "_" || (index > 0 && ((scalar >= "0" && scalar <= "9") || scalar == "$"))
            }
        return plain ? name : "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// `schema.name`, each part quoted as needed.
    public static func qualified(_ schema: String, _ name: String) -> String { quoted(schema) + "." + quoted(name) }
}
