import Foundation

/// Turns what `deno check` writes to stderr (NO_COLOR) into ``EdgeDeployError`` values with
/// paths relative to the bundle. The formats (Deno 2.9):
///
/// ```
/// TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.
/// const n: number = "x";
///       ^
///     at file:///tmp/x/index.ts:2:7
///
/// error: SyntaxError: Expected ',', got 'numeric literal (2, 2)'
///   |  … code frame …
///     at file:///tmp/x/index.ts:3:10
///
/// error: A remote specifier was requested: "https://…", but --no-remote is specified.
///     at file:///tmp/x/index.ts:1:23
/// error: npm specifiers were requested; but --no-npm is specified
/// error: JSR package manifest for '@std/assert' failed to load. A remote specifier …
/// TS2307 [ERROR]: Cannot find module 'file:///tmp/x/missing.ts'.
/// TS2307 [ERROR]: Import "lodash" not a dependency
///   hint: If you want to use the npm package, try running `deno add npm:lodash`
/// ```
///
/// A diagnostic's first `at` line is its location; related information after it (indented
/// further, with its own `at`) is dropped. The closing `Found N errors.` and `error: Type
/// checking failed.` lines are skipped.
enum DenoDiagnostics {
    /// The diagnostics in `output`. `roots` are the bundle folder's spellings (as given and
    /// as resolved); a location outside them keeps no file and a generic message, so nothing
    /// from outside the bundle is echoed.
    static func parse(_ output: String, roots: [String]) -> [EdgeDeployError] {
        var found: [EdgeDeployError] = []
        var pending: EdgeDeployError?
        var located = false
        func flush() {
            if let current = pending { found.append(current) }
            pending = nil
            located = false
        }
        for rawLine in output.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            let trimmed = line.drop(while: { $0 == " " })
            if let header = typeScriptHeader(line) {
                flush()
                pending = EdgeDeployError(header.code, sanitize(header.message, roots: roots))
            } else if line.hasPrefix("error: ") {
                let text = String(line.dropFirst("error: ".count))
                if text == "Type checking failed." { continue }
                flush()
                let (code, message, hint) = classify(text)
                pending = EdgeDeployError(code, sanitize(message, roots: roots), hint: hint)
            } else if trimmed.hasPrefix("hint: "), pending != nil, !located, pending?.hint == nil {
                pending?.hint = sanitize(String(trimmed.dropFirst("hint: ".count)), roots: roots)
            } else if trimmed.hasPrefix("at "), pending != nil, !located, line.prefix(while: { $0 == " " }).count <= 4 {
                located = true
                if let location = location(String(trimmed.dropFirst(3)), roots: roots) {
                    pending?.file = location.file
                    pending?.line = location.line
                    pending?.column = location.column
                } else {
                    pending?.message = "a module outside the function's folder does not check"
                    pending?.code = .unresolvedImport
                    pending?.hint = "keep every module the function uses inside its folder"
                }
            }
            if found.count >= EdgeDeployRejection.limit { break }
        }
        flush()
        return Array(found.prefix(EdgeDeployRejection.limit))
    }

    /// `TS2322 [ERROR]: message` → the code and message.
    private static func typeScriptHeader(_ line: Substring) -> (code: EdgeDeployError.Code, message: String)? {
        guard line.hasPrefix("TS"), let marker = line.range(of: " [ERROR]: ") else { return nil }
        let number = line[line.index(line.startIndex, offsetBy: 2)..<marker.lowerBound]
        guard !number.isEmpty, number.allSatisfy(\.isNumber), let value = Int(number) else { return nil }
        let message = String(line[marker.upperBound...])
        let code: EdgeDeployError.Code =
            switch value {
            case 2307, 2792: .unresolvedImport  // Cannot find module / not a dependency
            case 1000..<2000: .syntaxError  // TypeScript's grammar errors
            default: .typeError
            }
        return (code, "TS\(number): " + message)
    }

    /// The code, message and hint of an `error: …` line.
    private static func classify(_ text: String) -> (EdgeDeployError.Code, String, String?) {
        if text.hasPrefix("SyntaxError: ") { return (.syntaxError, String(text.dropFirst("SyntaxError: ".count)), nil) }
        let remoteHint = "nothing is downloaded at deploy: copy the module into the function's folder and import it with a relative path"
        if text.hasPrefix("A remote specifier was requested") || text.contains("--no-remote") || text.contains("--no-npm") || text.hasPrefix("JSR package") {
            return (.remoteImport, text, remoteHint)
        }
        if text.hasPrefix("Module not found") || text.hasPrefix("Relative import path") || text.hasPrefix("Unable to load") || text.contains("not a dependency") {
            return (.unresolvedImport, text, nil)
        }
        return (.invalidBundle, text, nil)
    }

    /// `file:///root/lib/x.ts:3:10` → (`lib/x.ts`, 3, 10); nil when the file is outside `roots`.
    private static func location(_ text: String, roots: [String]) -> (file: String, line: Int, column: Int)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, let column = Int(parts[parts.count - 1]), let line = Int(parts[parts.count - 2]) else { return nil }
        var url = parts.dropLast(2).joined(separator: ":")
        guard url.hasPrefix("file://") else { return nil }
        url = String(url.dropFirst("file://".count))
        let path = url.removingPercentEncoding ?? url
        for root in roots where path.hasPrefix(root + "/") {
            return (String(path.dropFirst(root.count + 1)), line, column)
        }
        return nil
    }

    /// `text` with the bundle folder's URLs and paths made relative.
    static func sanitize(_ text: String, roots: [String]) -> String {
        var result = text
        for root in roots.sorted(by: { $0.count > $1.count }) {
            result = result.replacingOccurrences(of: "file://" + root + "/", with: "")
            result = result.replacingOccurrences(of: root + "/", with: "")
        }
        return result
    }
}
