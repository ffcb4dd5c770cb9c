import Foundation

/// A file's path inside a bundle, normalised: relative, `/`-separated, no empty, `.` or
/// `..` component, no control character or backslash. What is stored, written to disk and
/// named in errors is always this form.
enum BundlePath {
    /// Why a path is refused.
    struct Problem: Error {
        var message: String
    }

    /// The longest path, in bytes.
    static let maxBytes = 1024
    /// The longest path component, in bytes (what file systems accept).
    static let maxComponentBytes = 255

    /// `path` normalised (`./lib//x.ts` → `lib/x.ts`), or the reason it cannot be.
    static func normalize(_ path: String) throws(Problem) -> String {
        let shown = FunctionName.quoted(path)
        guard !path.isEmpty else { throw Problem(message: "a file path is empty") }
        guard path.utf8.count <= maxBytes else { throw Problem(message: "the path \(shown) is longer than \(maxBytes) bytes") }
        guard !path.hasPrefix("/") else { throw Problem(message: "the path \(shown) is absolute; paths are relative to the function's folder") }
        guard !path.contains("\\") else { throw Problem(message: "the path \(shown) contains a backslash; separate folders with '/'") }
        if path.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw Problem(message: "the path \(shown) contains a control character")
        }
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) where component != "." {
            guard component != ".." else { throw Problem(message: "the path \(shown) contains '..'; a bundle's files stay inside its folder") }
            guard component.utf8.count <= maxComponentBytes else { throw Problem(message: "a component of the path \(shown) is longer than \(maxComponentBytes) bytes") }
            components.append(component)
        }
        guard !components.isEmpty else { throw Problem(message: "the path \(shown) names no file") }
        return components.joined(separator: "/")
    }

    /// The bundle path `specifier` (`./x.ts`, `../lib/y.ts`) names from the module at `from`,
    /// or nil when it leaves the bundle's root.
    static func resolve(_ specifier: String, from: String) -> String? {
        var components = from.split(separator: "/").dropLast().map(String.init)
        var path = specifier
        if let cut = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = String(path[..<cut]) }
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..":
                guard !components.isEmpty else { return nil }
                components.removeLast()
            default: components.append(String(component).removingPercentEncoding ?? String(component))
            }
        }
        return components.isEmpty ? nil : components.joined(separator: "/")
    }

    /// The lowercased extension of `path` (`ts`), or "".
    static func fileExtension(_ path: String) -> String {
        let name = path.split(separator: "/").last ?? ""
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        return name[name.index(after: dot)...].lowercased()
    }
}
