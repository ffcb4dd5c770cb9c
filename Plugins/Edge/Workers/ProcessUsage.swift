import Foundation

/// What a running process has used so far, read from `/proc/<pid>`: CPU time (user + system,
/// all threads) and anonymous resident memory (`statm` resident − shared: the worker's own
/// heap, not the Deno binary's pages that every worker shares).
struct ProcessUsage: Sendable, Equatable {
    var cpuMilliseconds: Int
    var residentBytes: Int

    private static let ticksPerSecond = max(1, sysconf(Int32(_SC_CLK_TCK)))
    private static let pageSize = max(1, sysconf(Int32(_SC_PAGESIZE)))

    /// The usage of `pid`, or nil when it is gone or the files do not parse.
    static func read(_ pid: pid_t) -> ProcessUsage? {
        guard let stat = readSmallFile("/proc/\(pid)/stat"), let statm = readSmallFile("/proc/\(pid)/statm") else { return nil }
        // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: UInt8(ascii: " "))
        // After ')': state is field 3, utime field 14 and stime field 15.
        guard fields.count > 12, let user = integer(fields[11]), let system = integer(fields[12]) else { return nil }
        let pages = statm.split(separator: UInt8(ascii: " "))
        guard pages.count > 2, let resident = integer(pages[1]), let shared = integer(pages[2]) else { return nil }
        let ticks = user.addingReportingOverflow(system)
        guard !ticks.overflow else { return nil }
        let milliseconds = ticks.partialValue.multipliedReportingOverflow(by: 1000)
        let bytes = max(0, resident - shared).multipliedReportingOverflow(by: pageSize)
        guard !milliseconds.overflow, !bytes.overflow else { return nil }
        return ProcessUsage(cpuMilliseconds: milliseconds.partialValue / ticksPerSecond, residentBytes: bytes.partialValue)
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) -> Int? {
        Int(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private static func readSmallFile(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return Array(buffer[0..<count])
    }
}
