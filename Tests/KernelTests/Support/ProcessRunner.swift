import Foundation

/// Runs a program to completion and returns its exit status and combined output.
///
/// `environment` replaces the inherited one when given; `input` is written to stdin.
func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    directory: String? = nil, input: String? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
    process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let stdin = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A new empty folder under the system's temporary directory, named `meltybase-<purpose>-<id>`.
func makeTemporaryDirectory(_ purpose: String) throws -> String {
    let directory = NSTemporaryDirectory() + "meltybase-\(purpose)-" + UUID().uuidString.prefix(8).lowercased()
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory
}
