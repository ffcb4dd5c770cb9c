import Foundation

/// `[kernel] trusted_proxies`: the load balancers whose `X-Forwarded-For` names the client.
///
/// Behind HAProxy every connection comes from the proxy, so per-client rate limits, sign-in
/// throttles, loopback-only routes and audit entries would all see one address. When the
/// TCP peer is one of these networks, the client is the rightmost `X-Forwarded-For` entry
/// that is not itself a trusted proxy (HAProxy's `option forwardfor` appends the peer it
/// saw; entries further left were written by the client and are not believed). A peer
/// outside the list is the client, whatever it sends.
public struct TrustedProxies: Sendable, Equatable {
    /// One network: address bytes (4 or 16) and prefix length.
    struct Network: Sendable, Equatable {
        var address: [UInt8]
        var prefix: Int

        func contains(_ candidate: [UInt8]) -> Bool {
            guard candidate.count == address.count else { return false }
            var remaining = prefix
            for index in address.indices where remaining > 0 {
                let bits = min(8, remaining)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if candidate[index] & mask != address[index] & mask { return false }
                remaining -= bits
            }
            return true
        }
    }

    private let networks: [Network]

    /// No proxy is trusted: the TCP peer is always the client.
    public static let none = TrustedProxies(networks: [])

    private init(networks: [Network]) { self.networks = networks }

    /// Parses `entries` (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`); throws naming the bad one.
    public init(_ entries: [String]) throws(Invalid) {
        var networks: [Network] = []
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let address = Self.bytes(of: String(parts[0])) else {
                throw Invalid(entry: entry, reason: "not an IPv4 or IPv6 address")
            }
            // An IPv4-mapped entry (::ffff:a.b.c.d) is kept as IPv4; its prefix counts from bit 96.
            let mapped = address.count == 4 && parts[0].contains(":")
            let written = mapped ? 128 : address.count * 8
            var prefix = address.count * 8
            if parts.count == 2 {
                guard let value = Int(parts[1]), (0...written).contains(value), !mapped || value >= 96 else {
                    throw Invalid(entry: entry, reason: "the prefix length must be \(mapped ? 96 : 0) to \(written)")
                }
                prefix = mapped ? value - 96 : value
            }
            networks.append(Network(address: address, prefix: prefix))
        }
        self.networks = networks
    }

    /// A `trusted_proxies` entry that does not parse.
    public struct Invalid: Error, CustomStringConvertible {
        /// The entry as written.
        public var entry: String
        /// What is wrong with it.
        public var reason: String
        /// `"x": reason`.
        public var description: String { "\"\(entry)\": \(reason)" }
    }

    /// Whether any proxy is trusted (when none is, ``client(peer:forwardedFor:)`` is the peer).
    public var isEmpty: Bool { networks.isEmpty }

    /// Whether `address` (text) is in one of the trusted networks.
    public func trusts(_ address: String) -> Bool {
        guard !networks.isEmpty, let bytes = Self.bytes(of: address) else { return false }
        return networks.contains { $0.contains(bytes) }
    }

    /// The client's address: `peer` unless it is a trusted proxy that forwarded the request,
    /// then the rightmost untrusted entry of the `X-Forwarded-For` header lines.
    public func client(peer: String, forwardedFor: [String]) -> String {
        guard !networks.isEmpty, !forwardedFor.isEmpty, trusts(peer) else { return peer }
        var entries: [Substring] = []
        for line in forwardedFor {
            entries += line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces)[...] }
        }
        var client = peer
        for entry in entries.reversed() {
            let text = Self.strippingPort(String(entry))
            // A malformed entry ends the walk: nothing left of it can be believed either.
            guard let bytes = Self.bytes(of: text) else { return client }
            client = Self.text(of: bytes)
            if !networks.contains(where: { $0.contains(bytes) }) { return client }
        }
        return client
    }

    /// Whether `address` (text) is a loopback address.
    public static func isLoopback(_ address: String) -> Bool {
        guard let bytes = bytes(of: address) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// `1.2.3.4:5678` → `1.2.3.4`, `[::1]:80` → `::1` (HAProxy writes no port; others may).
    private static func strippingPort(_ text: String) -> String {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return text
    }

    /// The 4 or 16 bytes of an address in text (`inet_pton`), nil when it is none. An
    /// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a peer on a `::` listener looks) is
    /// its IPv4 address, so it matches IPv4 entries.
    static func bytes(of text: String) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count <= 45, !text.utf8.contains(0) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] { return Array(bytes[12...]) }
        return bytes
    }

    /// The canonical text of 4 or 16 address bytes (`inet_ntop`).
    private static func text(of bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { source in inet_ntop(family, source.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard written != nil else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
