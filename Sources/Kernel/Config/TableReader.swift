import Foundation
import TOMLKit

/// Typed access to a TOML table that turns every mismatch into a located ``ConfigError``.
struct TableReader {
    let file: String
    let locator: TOMLKeyLocator

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: locator.line(of: key), key: key, message: message)
    }

    private func path(_ prefix: String, _ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }

    func checkKeys(_ table: TOMLTable, prefix: String, allowed: Set<String>) throws {
        for key in table.keys where !allowed.contains(key) {
            throw error(path(prefix, key), "unknown key; expected one of \(allowed.sorted().joined(separator: ", "))")
        }
    }

    func checkName(_ name: String, key: String, what: String) throws {
        let valid =
            !name.isEmpty && name.count <= 63
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
            } && !name.hasPrefix("-") && !name.hasPrefix("_")
        if !valid { throw error(key, "\(what) name \"\(name)\" must be 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit") }
    }

    func table(_ table: TOMLTable, _ key: String, prefix: String) throws -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let result = value.table else { throw error(path(prefix, key), "expected a table, found \(value.type)") }
        return result
    }

    func string(_ table: TOMLTable, _ key: String, prefix: String) throws -> String? {
        guard let value = table[key] else { return nil }
        guard let result = value.string else { throw error(path(prefix, key), "expected a string, found \(value.type)") }
        return result
    }

    func bool(_ table: TOMLTable, _ key: String, prefix: String) throws -> Bool? {
        guard let value = table[key] else { return nil }
        guard let result = value.bool else { throw error(path(prefix, key), "expected true or false, found \(value.type)") }
        return result
    }

    func int(_ table: TOMLTable, _ key: String, prefix: String, range: ClosedRange<Int>) throws -> Int? {
        guard let value = table[key] else { return nil }
        guard let result = value.int else { throw error(path(prefix, key), "expected an integer, found \(value.type)") }
        guard range.contains(result) else {
            throw error(path(prefix, key), "expected an integer from \(range.lowerBound) to \(range.upperBound), found \(result)")
        }
        return result
    }

    func number(_ table: TOMLTable, _ key: String, prefix: String, range: ClosedRange<Double>) throws -> Double? {
        guard let value = table[key] else { return nil }
        guard let result = value.double ?? value.int.map(Double.init) else {
            throw error(path(prefix, key), "expected a number, found \(value.type)")
        }
        guard range.contains(result) else {
            throw error(path(prefix, key), "expected a number from \(range.lowerBound) to \(range.upperBound), found \(result)")
        }
        return result
    }

    /// `egress_hosts`: host names or addresses, optionally `*.` suffixes and `:port`s.
    func egressHosts(_ table: TOMLTable, prefix: String) throws -> [String]? {
        guard let hosts = try stringArray(table, "egress_hosts", prefix: prefix) else { return nil }
        for host in hosts where EgressPolicy.HostPattern(host) == nil {
            throw error("\(prefix).egress_hosts", "\"\(host)\" is not a host: use a name (api.example.com), a suffix (*.example.com) or an address, with an optional :port")
        }
        return hosts
    }

    func stringArray(_ table: TOMLTable, _ key: String, prefix: String) throws -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw error(path(prefix, key), "expected an array of strings, found \(value.type)") }
        return try array.map {
            guard let text = $0.string else { throw error(path(prefix, key), "expected an array of strings, found an element of type \($0.type)") }
            return text
        }
    }

    func bucket(_ table: TOMLTable, _ key: String, prefix: String) throws -> TokenBucketConfig? {
        guard let inner = try self.table(table, key, prefix: prefix) else { return nil }
        let keyPath = path(prefix, key)
        try checkKeys(inner, prefix: keyPath, allowed: ["rate", "burst"])
        guard let rate = try number(inner, "rate", prefix: keyPath, range: 0.001...10_000_000) else {
            throw error(keyPath, "missing 'rate' (requests per second)")
        }
        let burst = try int(inner, "burst", prefix: keyPath, range: 1...100_000_000) ?? max(1, Int(rate.rounded(.up)))
        return TokenBucketConfig(rate: rate, burst: burst)
    }
}
