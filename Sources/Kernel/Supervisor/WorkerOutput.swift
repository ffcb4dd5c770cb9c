import Foundation
import NIOConcurrencyHelpers

/// Relays one worker's stderr to the supervisor's stderr and keeps its tail, so that the
/// crash report the Swift runtime writes there when the worker traps can be read after
/// the worker is gone.
///
/// A dedicated thread reads the pipe (blocking reads never touch the async executor).
final class WorkerOutput: Sendable {
    private let descriptor: CInt
    private let tailLimit = 256 * 1024
    private let state = NIOLockedValueBox<(tail: [UInt8], finishing: Bool)>(([], false))
    private let ended = DispatchSemaphore(value: 0)

    /// Starts relaying from `descriptor` (the read end of the worker's stderr pipe, owned from now on).
    init(descriptor: CInt) {
        self.descriptor = descriptor
        let thread = Thread { [self] in relay() }
        thread.name = "meltybase-worker-stderr"
        thread.start()
    }

    /// Stops once the pipe is drained (the worker has exited; what it wrote is in the pipe)
    /// and returns the tail of everything the worker wrote. May be called more than once.
    func finish() -> String {
        state.withLockedValue { $0.finishing = true }
        ended.wait()
        ended.signal()  // Later calls return at once.
        return String(decoding: state.withLockedValue { $0.tail }, as: UTF8.self)
    }

    private func relay() {
        defer {
            close(descriptor)
            ended.signal()
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var readAfterFinish = 0
        while true {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 50)
            let finishing = state.withLockedValue { $0.finishing }
            if ready < 0 && errno != EINTR { return }
            if ready <= 0 {
                if finishing { return }  // The worker is gone and the pipe is quiet.
                continue
            }
            let count = read(descriptor, &buffer, buffer.count)
            if count == 0 { return }  // Every writer (the worker and its children) closed it.
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return
            }
            var written = 0
            while written < count {
                let result = buffer[written..<count].withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
                if result <= 0 { break }
                written += result
            }
            state.withLockedValue { state in
                state.tail.append(contentsOf: buffer[0..<count])
                if state.tail.count > tailLimit { state.tail.removeFirst(state.tail.count - tailLimit) }
            }
            // A grandchild that keeps the pipe open and writes on must not hold up a restart.
            if finishing {
                readAfterFinish += count
                if readAfterFinish > 1024 * 1024 { return }
            }
        }
    }
}
