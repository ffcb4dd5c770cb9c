import Foundation
import Synchronization

/// One fuzz input read as a small text request: the first line is the subject (a query
/// string, a token, a license), the following `name: value` lines are headers. Every
/// target uses this shape so corpus files stay readable and editable by hand.
struct FuzzInput {
    /// The input as text (invalid UTF-8 replaced, as a server that decodes it would).
    let text: String
    /// The first line.
    let subject: String
    /// `name: value` lines after the first, names lowercased, in order.
    let headers: [(name: String, value: String)]

    /// Reads `count` bytes at `data`.
    init(_ data: UnsafeRawPointer, _ count: Int) {
        self.init(text: String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self))
    }

    /// Reads `text`.
    init(text: String) {
        self.text = text
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        subject = lines.first.map(String.init) ?? ""
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            var value = line[line.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
            headers.append((String(line[..<colon]).lowercased(), String(value)))
        }
        self.headers = headers
    }

    /// The first header called `name` (lowercase).
    func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }

    /// `FUZZ_VERBOSE=1` in the environment: targets print what they made of each input (to check a harness by hand).
    static let verbose = ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil

    /// Prints `line` to standard error when ``verbose``.
    static func trace(_ line: @autoclosure () -> String) {
        if verbose { FileHandle.standardError.write(Data((line() + "\n").utf8)) }
    }

    /// Ends the process the way a trap would, so libFuzzer records the input as a crash:
    /// for invariants the code under test must keep (an accepted cast is a type name, ...).
    static func violated(_ invariant: String, _ detail: String) -> Never {
        FileHandle.standardError.write(Data("fuzz invariant violated: \(invariant): \(detail)\n".utf8))
        abort()
    }

    /// Runs `body` to completion from synchronous code (libFuzzer's callback is synchronous).
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Task {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }
}

/// Carries a task's result back to the thread that waits for it.
private final class ResultBox<T: Sendable>: Sendable {
    private let stored = Mutex<T?>(nil)
    var value: T? {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}
