import Foundation
import MeltyEmbedded
import Testing

@testable import Kernel

/// The supervisor's pure parts: reading a crash report and the restart backoff. The process
/// behaviour (kill -9 of the worker and of the supervisor) is tested on the real binary in
/// Tests/Integration/test_supervisor.py.
@Suite("supervisor: crash reports and restart backoff")
struct SupervisorTests {
    static let plugins = [
        PluginConfig(name: "database", path: "/opt/meltybase/bin/libDatabasePlugin.so", required: false, configJSON: "{}", line: 1),
        PluginConfig(name: "echo-c", path: "/opt/meltybase/bin/libecho_c.so", required: false, configJSON: "{}", line: 2),
    ]

    /// The shape the Swift 6 runtime prints (frames innermost first, image after ` in `).
    static let report = """
        Swift/Integers.swift:3048: Fatal error: Arithmetic overflow

        *** Signal 4: Backtracing from 0x7f3a1c2b... done ***

        *** Program crashed: Illegal instruction at 0x00007f3a1c2b4f7f ***

        Thread 0 "meltybase":
          0      0x00007f3a1d6f961f epoll_wait + 87 in libc.so.6

        Thread 5 "NIO-ELT-0-#3" crashed:

          0      0x00007f3a1c2b4f7f closure #1 in closure #1 in _assertionFailure(_:_:file:line:flags:) + 623 in libswiftCore.so
          1 [ra] 0x00007f3a1c43961f _assertionFailure(_:_:file:line:flags:) + 302 in libswiftCore.so
          2 [ra] 0x00007f3a10a01234 RestHandler.contentRange(start:end:) + 84 in libDatabasePlugin.so at /src/Plugins/Database/REST/RestHandler.swift:88:30
          3 [ra] 0x00007f3a10a05678 route_echo + 12 in libecho_c.so
          4 [ra] 0x000055e4e1c4b3a4 PluginInstance.handle(_:) + 32 in meltybase at /src/Sources/Kernel/PluginHost/PluginInstance.swift:120:5

        Thread 6 "NIO-ELT-0-#4":
          0      0x00007f3a1d6f961f route_echo + 3 in libecho_c.so
        """

    @Test("the innermost plugin frame of the crashed thread names the plugin")
    func namesInnermostPlugin() {
        let found = CrashReport(plugins: Self.plugins).lastPlugin(in: Self.report)
        #expect(found?.name == "database")
        #expect(found?.library == "libDatabasePlugin.so")
    }

    @Test("no plugin is blamed without a crashed thread or without plugin frames")
    func noPlugin() {
        let reader = CrashReport(plugins: Self.plugins)
        #expect(reader.lastPlugin(in: "") == nil)
        #expect(reader.lastPlugin(in: "Thread 6 \"x\":\n  0 0x1 route_echo + 3 in libecho_c.so\n") == nil)
        let kernelOnly = Self.report.replacingOccurrences(of: "in libDatabasePlugin.so", with: "in meltybase")
            .replacingOccurrences(of: "route_echo + 12 in libecho_c.so", with: "main + 1 in meltybase")
        #expect(reader.lastPlugin(in: kernelOnly) == nil)
    }

    @Test("a frame without symbol or source location still names its image")
    func frameShapes() {
        #expect(CrashReport.image(ofFrame: "3 [ra] 0x00007f3a10a05678 route_echo + 12 in libecho_c.so") == "libecho_c.so")
        #expect(CrashReport.image(ofFrame: "2 [ra] 0x1 f() + 8 in libX.so at /a b/in c.swift:1:2") == "libX.so")
        #expect(CrashReport.image(ofFrame: "0 0x00007f3a1c2b4f7f") == nil)
    }

    @Test("restarts back off 0, 0.5, 1, 2, 5, 5 s in a crash loop and reset after a stable run")
    func backoff() {
        var backoff = RestartBackoff()
        let loop = (0..<6).map { _ in backoff.delay(afterUptime: 1) }
        #expect(loop == [0, 0.5, 1, 2, 5, 5])
        #expect(backoff.consecutiveDeaths == 6)
        #expect(backoff.delay(afterUptime: 30) == 0)
        #expect(backoff.delay(afterUptime: 2) == 0.5)
    }

    @Test("a worker's exit status decodes into exit code or signal")
    func exitStatus() {
        let exited = WorkerExit(status: 78 << 8)
        #expect(exited.code == 78 && exited.signal == nil && !exited.crashed)
        let killed = WorkerExit(status: SIGKILL)
        #expect(killed.signal == SIGKILL && !killed.crashed)
        #expect(killed.description.hasPrefix("was killed by signal 9"))
        #expect(WorkerExit(status: SIGILL).crashed)
    }
}
