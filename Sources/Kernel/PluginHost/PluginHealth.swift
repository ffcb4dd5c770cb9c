import Foundation
import MeltyABIBytes
import MeltyPluginABI
import Synchronization

/// A plugin's answer to the ABI 1.5 `health` callback, as the overview, `/v1/hub/plugins`
/// and `meltybase doctor` show it.
public struct PluginHealth: Sendable, Equatable {
    /// `ok`, `degraded`, `failing`, or `not reported` (no callback).
    public var status: String
    /// One line from the plugin (or the kernel, when the call failed or timed out).
    public var message: String

    /// A plugin without the callback.
    public static let notReported = PluginHealth(status: "not reported", message: "")
    /// How long the kernel waits for a plugin's answer.
    static let timeout: Duration = .seconds(2)

    /// Calls `plugin`'s `health` on `context`'s blocking pool and waits at most `timeout`;
    /// a plugin that does not answer in time is "failing" (its call finishes on its own).
    static func check(_ plugin: LoadedPlugin, context: HostContext, timeout: Duration = timeout) async -> PluginHealth {
        guard plugin.reportsHealth else { return .notReported }
        let started = plugin.healthInFlight.withLockedValue { running -> Bool in
            defer { running = true }
            return !running
        }
        guard started else {
            return PluginHealth(status: "failing", message: "the previous health check has not returned yet")
        }
        let descriptor = SharedPointer(plugin.descriptor)
        return await withCheckedContinuation { (continuation: CheckedContinuation<PluginHealth, Never>) in
            let answer = FirstAnswer(continuation)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                answer.finish(PluginHealth(status: "failing", message: "health check timed out after \(timeout)"))
            }
            Task {
                defer { plugin.healthInFlight.withLockedValue { $0 = false } }
                do {
                    answer.finish(try await context.runBlocking { call(descriptor.pointer) })
                } catch {
                    answer.finish(PluginHealth(status: "failing", message: "health check not run: \(error)"))
                }
                timer.cancel()  // the answer is in: the timer need not wait out its 2 s
            }
        }
    }

    /// Resumes the waiting caller with whichever answer comes first: the plugin's or the timeout.
    private final class FirstAnswer: Sendable {
        private let continuation: Mutex<CheckedContinuation<PluginHealth, Never>?>

        init(_ continuation: CheckedContinuation<PluginHealth, Never>) {
            self.continuation = Mutex(continuation)
        }

        func finish(_ health: PluginHealth) {
            continuation.withLock { pending in
                defer { pending = nil }
                return pending
            }?.resume(returning: health)
        }
    }

    /// Receives the plugin's JSON during the call.
    private final class Collector {
        var bytes: [UInt8] = []
    }

    /// The blocking call itself and the reading of its answer.
    private static func call(_ descriptor: UnsafePointer<mb_plugin_descriptor>) -> PluginHealth {
        guard let health = descriptor.pointee.health else { return .notReported }
        let collector = Collector()
        let error = HostErrorBuffer()
        let status = withExtendedLifetime(collector) {
            health(
                { context, bytes in
                    guard let context else { return }
                    let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                    collector.bytes = copyBytes(bytes)
                }, Unmanaged.passUnretained(collector).toOpaque(), error.buffer)
        }
        guard status == MB_OK else {
            return PluginHealth(status: "failing", message: error.text.isEmpty ? "health returned \(StatusName.of(status))" : error.text)
        }
        return parse(collector.bytes)
    }

    /// `{"status":"ok"|"degraded"|"failing","message":"..."}`; anything else is "failing".
    static func parse(_ bytes: [UInt8]) -> PluginHealth {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let status = object["status"] as? String, ["ok", "degraded", "failing"].contains(status)
        else {
            return PluginHealth(
                status: "failing",
                message:
                    "health answered \(String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription), expected {\"status\":\"ok\"|\"degraded\"|\"failing\",\"message\":...}")
        }
        return PluginHealth(status: status, message: object["message"] as? String ?? "")
    }
}
