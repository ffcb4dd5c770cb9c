import Testing

@testable import Kernel

@Suite("trusted_proxies: which X-Forwarded-For entry names the client")
struct TrustedProxiesTests {
    @Test("networks match by prefix, IPv4 and IPv6; bad entries are refused naming them")
    func networks() throws {
        let proxies = try TrustedProxies(["10.0.0.0/8", "192.168.1.7", "fd00::/8", "172.16.0.0/12"])
        #expect(proxies.trusts("10.255.1.2") && proxies.trusts("192.168.1.7") && proxies.trusts("fd12::1") && proxies.trusts("172.31.255.255"))
        #expect(!proxies.trusts("11.0.0.1") && !proxies.trusts("192.168.1.8") && !proxies.trusts("fe80::1") && !proxies.trusts("172.32.0.1"))
        #expect(!proxies.trusts("not an address") && !proxies.trusts(""))
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "example.com", "10.0.0.1/-1", "10.0.0.1/x", ""] {
            #expect(throws: TrustedProxies.Invalid.self, "\(bad)") { try TrustedProxies([bad]) }
        }
        #expect(try TrustedProxies(["0.0.0.0/0"]).trusts("8.8.8.8"))
        // A peer on a `::` listener is IPv4-mapped: it matches IPv4 entries, and mapped entries match IPv4 peers.
        #expect(proxies.trusts("::ffff:10.1.2.3") && !proxies.trusts("::ffff:11.1.2.3"))
        let mapped = try TrustedProxies(["::ffff:192.168.0.0/112"])
        #expect(mapped.trusts("192.168.7.7") && mapped.trusts("::ffff:192.168.7.7") && !mapped.trusts("192.169.0.1"))
        #expect(throws: TrustedProxies.Invalid.self) { try TrustedProxies(["::ffff:10.0.0.0/64"]) }
    }

    @Test("the client is the rightmost untrusted entry, only when the peer is trusted")
    func client() throws {
        let proxies = try TrustedProxies(["10.0.0.0/8"])
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["203.0.113.9"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["198.51.100.1, 203.0.113.9"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["198.51.100.1", "203.0.113.9, 10.1.1.1"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["10.2.2.2, 10.1.1.1"]) == "10.2.2.2", "all trusted: the leftmost")
        #expect(proxies.client(peer: "203.0.113.1", forwardedFor: ["198.51.100.1"]) == "203.0.113.1", "an untrusted peer is the client")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: []) == "10.0.0.1")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["garbage"]) == "10.0.0.1", "malformed: the peer")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["203.0.113.9, garbage, 10.1.1.1"]) == "10.1.1.1", "the walk stops at garbage")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["203.0.113.9:5050"]) == "203.0.113.9")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["[2001:db8::1]:443"]) == "2001:db8::1")
        #expect(proxies.client(peer: "10.0.0.1", forwardedFor: ["2001:DB8:0::1"]) == "2001:db8::1", "canonical text")
        #expect(proxies.client(peer: "::ffff:10.0.0.1", forwardedFor: ["203.0.113.9"]) == "203.0.113.9", "an IPv4-mapped proxy")
        #expect(TrustedProxies.none.client(peer: "10.0.0.1", forwardedFor: ["203.0.113.9"]) == "10.0.0.1")
    }

    @Test("loopback: 127/8, ::1 and IPv4-mapped 127/8")
    func loopback() {
        #expect(TrustedProxies.isLoopback("127.0.0.1") && TrustedProxies.isLoopback("127.9.9.9") && TrustedProxies.isLoopback("::1"))
        #expect(TrustedProxies.isLoopback("::ffff:127.0.0.1"))
        #expect(!TrustedProxies.isLoopback("10.0.0.1") && !TrustedProxies.isLoopback("::2") && !TrustedProxies.isLoopback("x"))
    }
}
