import Foundation
import Synchronization

/// A one-connection SMTP server on 127.0.0.1 that answers from a script, on a thread of
/// its own with blocking sockets (test code only): the greeting, then one scripted reply
/// per command line; after a 354 reply it takes the message up to the lone "." line.
/// For behaviour aiosmtpd cannot show: refused EHLO, hostile replies.
final class ScriptedSMTPServer: Sendable {
    /// The port it listens on.
    let port: Int
    private let listener: Int32
    private let commands = Mutex<[String]>([])
    private let finished = Mutex(false)

    init(greeting: [UInt8], replies: [String]) throws {
        let (listener, port) = try SMTPClientTests.listeningSocket(listen: true)
        self.listener = listener
        self.port = port
        let thread = Thread { [self] in serve(greeting: greeting, replies: replies) }
        thread.start()
    }

    /// The command lines received so far.
    var received: [String] { commands.withLock { $0 } }

    private func serve(greeting: [UInt8], replies: [String]) {
        defer { finished.withLock { $0 = true } }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var pending: [UInt8] = []
        func readLine() -> String? {
            while true {
                if let newline = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self).replacingOccurrences(of: "\r", with: "")
                    pending.removeSubrange(...newline)
                    return line
                }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = recv(connection, &buffer, buffer.count, 0)
                guard count > 0 else { return nil }
                pending += buffer.prefix(count)
            }
        }
        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        send(greeting)
        var index = 0
        while index < replies.count {
            guard let line = readLine() else { return }
            commands.withLock { $0.append(line) }
            send(Array(replies[index].utf8))
            if replies[index].hasPrefix("354") {
                // The message, then the reply to its end without a command in between.
                while let dataLine = readLine(), dataLine != "." {}
                index += 1
                guard index < replies.count else { break }
                send(Array(replies[index].utf8))
            }
            index += 1
        }
        while readLine() != nil {}
    }

    /// Closes the listener (a connection still open ends when the client closes it).
    func stop() {
        close(listener)
    }
}
