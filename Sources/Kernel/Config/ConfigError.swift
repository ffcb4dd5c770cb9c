/// A problem in `plugins.toml` or an environment override, located as precisely as possible.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The file the problem is in.
    public var file: String
    /// 1-based line, when known.
    public var line: Int?
    /// Dotted key path (`plugins.echo.path`), when the problem is about a key.
    public var key: String?
    /// What is wrong and how to fix it.
    public var message: String

    /// A located configuration error.
    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `plugins.toml:12: key 'kernel.port': expected an integer between 0 and 65535, found "x"`.
    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "key '\(key)': " }
        return text + message
    }
}
