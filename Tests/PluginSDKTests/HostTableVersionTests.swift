import Foundation
import MeltyPluginABI
import Synchronization
import Testing

@testable import MeltyPluginSDK

/// Which fake host functions ran, in order.
private let calls = Mutex<[String]>([])

private func record(_ name: String) { calls.withLock { $0.append(name) } }

/// A host table as a kernel of ABI 1.`minor` would hand it over: every function that version
/// has, `struct_size` cut at that version's end. The functions of later versions are filled in
/// too (non-NULL, recording their call), so a plugin that trusted a non-NULL pointer beyond
/// `struct_size` would be caught calling them.
private func hostTable(minor: UInt32) -> UnsafeMutablePointer<mb_host_api> {
    var api = mb_host_api()
    api.abi_major = UInt32(MB_ABI_MAJOR)
    api.abi_minor = minor
    api.log = { _, _, _, _, _ in record("log") }
    api.audit = { _, _, action, actionLength, _, _, _, _, _ in
        record("audit:" + String(decoding: UnsafeRawBufferPointer(start: action, count: actionLength), as: UTF8.self))
        return MB_OK
    }
    api.counter_add = { _, _, _, _, _ in record("counter_add") }
    api.portal_name = { _ in mb_host_bytes(data: nil, len: 0) }
    api.postgres_conninfo = { _, _ in
        record("postgres_conninfo")
        return UnsafePointer(fakeConninfo)
    }
    api.portal_jwt_sign = { _, _, completion, context, _ in
        record("portal_jwt_sign")
        Array("a.b.c".utf8).withUnsafeBufferPointer { completion?(context, MB_OK, mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
        return MB_OK
    }
    api.secret_seal = { _, _, _, _, _, _, _ in
        record("secret_seal")
        return MB_OK
    }
    api.secret_open = { _, _, _, _, _, _, _ in
        record("secret_open")
        return MB_OK
    }
    api.audit_async = { _, _, action, actionLength, _, _, _, _, completion, context, _ in
        record("audit_async:" + String(decoding: UnsafeRawBufferPointer(start: action, count: actionLength), as: UTF8.self))
        completion?(context, MB_OK, mb_host_bytes(data: nil, len: 0))
        return MB_OK
    }
    api.portal_token_verify = { _, token, completion, context, _ in
        record("portal_token_verify:" + String(decoding: UnsafeRawBufferPointer(start: token.data, count: token.len), as: UTF8.self))
        Array(#"{"kind":"portal","role":"anon","subject":null,"aal":null,"claims":{"role":"anon"}}"#.utf8).withUnsafeBufferPointer {
            completion?(context, MB_OK, mb_host_bytes(data: $0.baseAddress, len: $0.count))
        }
        return MB_OK
    }
    api.redis_url = { _ in
        record("redis_url")
        return UnsafePointer(fakeRedisURL)
    }
    let ends: [UInt32: PartialKeyPath<mb_host_api>] = [
        0: \.portal_name, 1: \.portal_jwt_sign, 2: \.secret_open, 3: \.secret_open, 4: \.audit_async, 5: \.audit_async, 6: \.redis_url,
    ]
    api.struct_size = MemoryLayout<mb_host_api>.offset(of: ends[minor]!)! + MemoryLayout<UnsafeRawPointer>.size
    let pointer = UnsafeMutablePointer<mb_host_api>.allocate(capacity: 1)
    pointer.initialize(to: api)
    return pointer
}

private nonisolated(unsafe) let fakeConninfo = strdup("host=/fake dbname=meltybase")!
private nonisolated(unsafe) let fakeRedisURL = strdup("unix:///fake/redis.sock")!

@Suite("SDK checks the host table per function", .serialized)
struct HostTableVersionTests {
    @Test("the host table sizes of ABI 1.0 to 1.6 are the frozen ones")
    func tableSizes() {
        // Tests/Integration/abi_freeze.py freezes the same numbers against the C header.
        #expect((0...6).map { hostTable(minor: $0).pointee.struct_size } == [104, 120, 136, 136, 144, 144, 160])
    }

    @Test("any 1.x host table is accepted at init; another major or a table below 1.0 is refused")
    func acceptance() {
        let old = hostTable(minor: 1)
        #expect(PluginHostServices.refusal(of: old) == nil)
        #expect(PluginHostServices.refusal(of: hostTable(minor: 0)) == nil)
        let otherMajor = hostTable(minor: 4)
        otherMajor.pointee.abi_major = 2
        #expect(PluginHostServices.refusal(of: otherMajor)?.contains("major") == true)
        let tiny = hostTable(minor: 0)
        tiny.pointee.struct_size = 40
        #expect(PluginHostServices.refusal(of: tiny)?.contains("smaller than ABI 1.0") == true)
    }

    @Test("on a 1.1 host: what 1.1 has works, secret_seal and secret_open throw unsupported, audit falls back to the blocking call")
    func plugin14OnHost11() async throws {
        calls.withLock { $0.removeAll() }
        let host = PluginHostServices(api: hostTable(minor: 1), plugin: nil)
        let portal = Portal(name: "acme", handle: nil)
        host.log(.info, "hello")
        #expect(try host.postgresConninfo(portal: portal) == "host=/fake dbname=meltybase")
        #expect(try await host.signPortalJWT(claims: ["sub": "u"], portal: portal) == "a.b.c")
        do {
            _ = try host.sealSecret(Array("seed".utf8), portal: portal, context: "row-1")
            Issue.record("sealSecret should throw on a 1.1 host")
        } catch PluginError.unsupported(let message) {
            #expect(message == "secret_seal needs ABI 1.2, the host has 1.1")
        }
        do {
            _ = try host.openSecret("sealed", portal: portal, context: "row-1")
            Issue.record("openSecret should throw on a 1.1 host")
        } catch PluginError.unsupported(let message) {
            #expect(message == "secret_open needs ABI 1.2, the host has 1.1")
        }
        try await host.audit(action: "test.old_host", target: "t", portal: portal)
        // Nothing beyond struct_size ran, though those pointers are set.
        #expect(calls.withLock { $0 } == ["log", "postgres_conninfo", "portal_jwt_sign", "audit:test.old_host"])
    }

    @Test("on a 1.0 host postgres_conninfo and portal_jwt_sign are unsupported too")
    func plugin14OnHost10() async throws {
        let host = PluginHostServices(api: hostTable(minor: 0), plugin: nil)
        let portal = Portal(name: "acme", handle: nil)
        #expect(throws: PluginError.self) { try host.postgresConninfo(portal: portal) }
        do {
            _ = try await host.signPortalJWT(claims: [:], portal: portal)
            Issue.record("signPortalJWT should throw on a 1.0 host")
        } catch PluginError.unsupported(let message) {
            #expect(message == "portal_jwt_sign needs ABI 1.1, the host has 1.0")
        }
    }

    @Test("on a 1.4 host every function is used, audit through audit_async")
    func plugin14OnHost14() async throws {
        calls.withLock { $0.removeAll() }
        let host = PluginHostServices(api: hostTable(minor: 4), plugin: nil)
        let portal = Portal(name: "acme", handle: nil)
        _ = try host.sealSecret(Array("seed".utf8), portal: portal, context: "row-1")
        try await host.audit(action: "test.new_host", target: "t", portal: portal)
        #expect(calls.withLock { $0 } == ["secret_seal", "audit_async:test.new_host"])
    }

    @Test("on a 1.5 host verifyPortalToken throws unsupported and redisURL is nil, without calling past struct_size")
    func plugin16OnHost15() async throws {
        calls.withLock { $0.removeAll() }
        let host = PluginHostServices(api: hostTable(minor: 5), plugin: nil)
        let portal = Portal(name: "acme", handle: nil)
        do {
            _ = try await host.verifyPortalToken("a.b.c", portal: portal)
            Issue.record("verifyPortalToken should throw on a 1.5 host")
        } catch PluginError.unsupported(let message) {
            #expect(message == "portal_token_verify needs ABI 1.6, the host has 1.5")
        }
        #expect(host.redisURL == nil)
        #expect(calls.withLock { $0 } == [])
    }

    @Test("on a 1.6 host verifyPortalToken hands the token over and parses the credential; redisURL is the host's")
    func plugin16OnHost16() async throws {
        calls.withLock { $0.removeAll() }
        let host = PluginHostServices(api: hostTable(minor: 6), plugin: nil)
        let credential = try await host.verifyPortalToken("x.y.z", portal: Portal(name: "acme", handle: nil))
        #expect(credential.kind == .portal)
        #expect(credential.role == "anon")
        #expect(host.redisURL == "unix:///fake/redis.sock")
        #expect(calls.withLock { $0 } == ["portal_token_verify:x.y.z", "redis_url"])
    }

    @Test("a NULL entry inside struct_size is unsupported as well")
    func nullEntry() {
        let table = hostTable(minor: 2)
        table.pointee.secret_seal = nil
        let host = PluginHostServices(api: table, plugin: nil)
        #expect(throws: PluginError.self) { try host.sealSecret([1], portal: Portal(name: "acme", handle: nil), context: "c") }
    }
}
