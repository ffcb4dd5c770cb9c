import Foundation

/// Which hosts a plugin's `http_fetch` may reach.
///
/// - `[plugins.<name>] egress_hosts = ["api.example.com", "*.example.org", "10.0.0.5:8080"]`:
///   the plugin may reach only these (a private or loopback address too, when it is listed).
/// - Without a list a plugin may reach any host whose addresses are all public: loopback,
///   private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254),
///   carrier-grade NAT, multicast and unspecified addresses are refused.
/// - `[portals.<name>] egress_hosts` narrows further for that portal: a host must be on
///   both lists (the portal's and, when it has one, the plugin's).
///
/// Refusals are `MB_ERR_REFUSED` with a message naming the host and the key to change.
/// Redirects are not followed (a public host could redirect into the private network).
struct EgressPolicy: Sendable {
    /// A listed host: exact (`api.example.com`), a suffix (`*.example.com`), optionally with a port.
    struct HostPattern: Sendable, Equatable {
        var host: String
        var port: Int?

        init?(_ text: String) {
            var value = text.trimmingCharacters(in: .whitespaces).lowercased()
            var port: Int?
            if value.hasPrefix("[") {
                guard let close = value.firstIndex(of: "]") else { return nil }
                let rest = value[value.index(after: close)...]
                if rest.hasPrefix(":") {
                    guard let number = Int(rest.dropFirst()), (1...65535).contains(number) else { return nil }
                    port = number
                } else if !rest.isEmpty {
                    return nil
                }
                value = String(value[value.index(after: value.startIndex)..<close])
            } else if let colon = value.lastIndex(of: ":"), value.filter({ $0 == ":" }).count == 1 {
                guard let number = Int(value[value.index(after: colon)...]), (1...65535).contains(number) else { return nil }
                port = number
                value = String(value[..<colon])
            }
            guard !value.isEmpty, value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.*:".contains($0)) }) else { return nil }
            if value.contains("*") && !(value.hasPrefix("*.") && value.dropFirst(2).allSatisfy { $0 != "*" }) { return nil }
            host = value
            self.port = port
        }

        func matches(host candidate: String, port candidatePort: Int) -> Bool {
            if let port, port != candidatePort { return false }
            if host.hasPrefix("*.") { return candidate.hasSuffix(String(host.dropFirst(1))) }
            return candidate == host
        }
    }

    /// Lists by plugin name (`[plugins.X] egress_hosts`).
    var pluginHosts: [String: [HostPattern]] = [:]
    /// Lists by portal name (`[portals.X] egress_hosts`).
    var portalHosts: [String: [HostPattern]] = [:]

    /// The policy of `config`.
    init(config: KernelConfig) {
        for plugin in config.plugins where plugin.egressHosts != nil {
            pluginHosts[plugin.name] = (plugin.egressHosts ?? []).compactMap(HostPattern.init)
        }
        for portal in config.portals where portal.egressHosts != nil {
            portalHosts[portal.name] = (portal.egressHosts ?? []).compactMap(HostPattern.init)
        }
    }

    init() {}

    /// What the lists say about `host:port` for `plugin` in `portal`.
    enum Decision: Equatable {
        /// A list names the host: it may be reached whatever its addresses.
        case listed
        /// No list applies: it may be reached if every address it resolves to is public.
        case publicOnly
        case refused(String)
    }

    func decide(plugin: String, portal: String?, host rawHost: String, port: Int) -> Decision {
        let host = rawHost.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if let portal, let list = portalHosts[portal], !list.contains(where: { $0.matches(host: host, port: port) }) {
            return .refused("http_fetch: \(host):\(port) is not in [portals.\(portal)] egress_hosts")
        }
        if let list = pluginHosts[plugin] {
            return list.contains(where: { $0.matches(host: host, port: port) })
                ? .listed : .refused("http_fetch: \(host):\(port) is not in [plugins.\(plugin)] egress_hosts")
        }
        if let portal, portalHosts[portal] != nil { return .listed }
        return .publicOnly
    }

    /// Whether `address` (an IPv4 or IPv6 literal) is public, i.e. none of loopback, private,
    /// unique-local, link-local, carrier-grade NAT, benchmarking, multicast, reserved or unspecified.
    static func isPublic(address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return isPublic(ipv4: UInt32(bigEndian: v4.s_addr))
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judge the IPv4 address.
        let tail = UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15])
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return isPublic(ipv4: tail) }
        if bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xFF && bytes[3] == 0x9B && bytes[4..<12].allSatisfy({ $0 == 0 }) {
            return isPublic(ipv4: tail)
        }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) { return false }  // :: and ::1
        if bytes[0] & 0xFE == 0xFC { return false }  // fc00::/7 unique local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return false }  // fe80::/10 link local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0xC0 { return false }  // fec0::/10 site local
        if bytes[0] == 0xFF { return false }  // multicast
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0D && bytes[3] == 0xB8 { return false }  // documentation
        return true
    }

    /// Whether `host` is an IPv4 or IPv6 address rather than a name.
    static func isAddressLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    static func isPublic(ipv4 address: UInt32) -> Bool {
        func within(_ network: UInt32, _ bits: UInt32) -> Bool { address >> (32 - bits) == network >> (32 - bits) }
        let blocked: [(UInt32, UInt32)] = [
            (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16),
            (0xAC10_0000, 12), (0xC000_0000, 24), (0xC000_0200, 24), (0xC0A8_0000, 16), (0xC612_0000, 15),
            (0xC633_6400, 24), (0xCB00_7100, 24), (0xE000_0000, 4), (0xF000_0000, 4),
        ]
        return !blocked.contains { within($0.0, $0.1) }
    }

    /// The addresses `host` resolves to (blocking: call it off the event loops and the async pool).
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if let address = entry.pointee.ai_addr,
                getnameinfo(address, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0
            {
                addresses.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}
