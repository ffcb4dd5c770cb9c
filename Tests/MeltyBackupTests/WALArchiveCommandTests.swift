import Foundation
import MeltyBackup
import MeltyEmbedded
import Testing

/// The archive and restore commands run through /bin/sh, with `%p`/`%f` substituted as
/// Postgres does, on files in a folder whose path needs quoting.
@Suite("WAL archive and restore commands")
struct WALArchiveCommandTests {
    /// A fresh folder holding `wal it's 100% "x"/` (spaces, a quote, a percent sign).
    func folders() throws -> (root: String, archive: String) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("walcmd-\(UUID().uuidString)").path
        let archive = root + "/wal it's 100% \"x\" $HOME"
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        return (root, archive)
    }

    /// `command` with `%p`, `%f` and `%%` replaced as Postgres replaces them.
    func substitute(_ command: String, path: String, file: String) -> String {
        var result = ""
        var iterator = command.makeIterator()
        while let character = iterator.next() {
            guard character == "%" else {
                result.append(character)
                continue
            }
            switch iterator.next() {
            case "p": result += path
            case "f": result += file
            case "%": result += "%"
            case let other?: result += "%" + String(other)
            case nil: result += "%"
            }
        }
        return result
    }

    /// Runs `command` with /bin/sh in `directory`; its exit status.
    func shell(_ command: String, in directory: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A segment-like file: some bytes, then a zero tail.
    func segment(seed: UInt8) -> Data {
        var data = Data((0..<65_536).map { UInt8(truncatingIfNeeded: Int($0) &* 31 &+ Int(seed)) })
        data.append(Data(count: 1 << 20))
        return data
    }

    /// The content of gzip file `path`, decompressed.
    func gunzip(_ path: String) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "gzip -dc \"$1\"", "sh", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return data
    }

    @Test("a segment is stored compressed; the same file again succeeds, a different one fails")
    func archive() throws {
        let (root, archive) = try folders()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let name = "000000010000000000000003"
        let pgWal = root + "/pg_wal"
        try FileManager.default.createDirectory(atPath: pgWal, withIntermediateDirectories: true)
        let original = segment(seed: 1)
        FileManager.default.createFile(atPath: pgWal + "/" + name, contents: original)
        let command = substitute(WALArchiveCommands.archive(directory: archive), path: "pg_wal/" + name, file: name)

        #expect(try shell(command, in: root) == 0)
        let stored = archive + "/" + name + ".gz"
        #expect(try gunzip(stored) == original)
        let storedSize = (try FileManager.default.attributesOfItem(atPath: stored)[.size] as? NSNumber)?.intValue ?? Int.max
        #expect(storedSize < original.count / 4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: archive) == [name + ".gz"])

        // Archived again with identical content (a crash before Postgres noted it): success.
        #expect(try shell(command, in: root) == 0)
        // A different file under the same name: refused, the stored one untouched.
        FileManager.default.createFile(atPath: pgWal + "/" + name, contents: segment(seed: 2))
        #expect(try shell(command, in: root) != 0)
        #expect(try gunzip(stored) == original)
        #expect(try FileManager.default.contentsOfDirectory(atPath: archive) == [name + ".gz"])

        // History files go through the same command.
        FileManager.default.createFile(atPath: pgWal + "/00000002.history", contents: Data("1\t0/3000000\tno recovery target\n".utf8))
        #expect(try shell(substitute(WALArchiveCommands.archive(directory: archive), path: "pg_wal/00000002.history", file: "00000002.history"), in: root) == 0)
        #expect(try gunzip(archive + "/00000002.history.gz") == Data("1\t0/3000000\tno recovery target\n".utf8))
        let contents = try WALArchive(directory: archive).scan()
        #expect(contents.segments.map(\.name) == [name])
        #expect(contents.historyTimelines == [2])
    }

    @Test("restore decompresses X.gz, copies an uncompressed X, fails when neither exists")
    func restore() throws {
        let (root, archive) = try folders()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let pgWal = root + "/pg_wal"
        try FileManager.default.createDirectory(atPath: pgWal, withIntermediateDirectories: true)
        let compressed = segment(seed: 3)
        FileManager.default.createFile(atPath: pgWal + "/000000010000000000000004", contents: compressed)
        let archiveCommand = substitute(WALArchiveCommands.archive(directory: archive), path: "pg_wal/000000010000000000000004", file: "000000010000000000000004")
        #expect(try shell(archiveCommand, in: root) == 0)
        let plain = segment(seed: 4)
        FileManager.default.createFile(atPath: archive + "/000000010000000000000005", contents: plain)

        let restore = WALArchiveCommands.restore(directory: archive)
        #expect(try shell(substitute(restore, path: "pg_wal/RECOVERYXLOG", file: "000000010000000000000004"), in: root) == 0)
        #expect(FileManager.default.contents(atPath: pgWal + "/RECOVERYXLOG") == compressed)
        #expect(try shell(substitute(restore, path: "pg_wal/RECOVERYXLOG", file: "000000010000000000000005"), in: root) == 0)
        #expect(FileManager.default.contents(atPath: pgWal + "/RECOVERYXLOG") == plain)
        try FileManager.default.removeItem(atPath: pgWal + "/RECOVERYXLOG")
        #expect(try shell(substitute(restore, path: "pg_wal/RECOVERYXLOG", file: "000000010000000000000006"), in: root) != 0)
        #expect(!FileManager.default.fileExists(atPath: pgWal + "/RECOVERYXLOG"))
    }

    @Test("the scan counts X and X.gz as one segment and reads the segment size from gzip")
    func scanMixed() throws {
        let (root, archive) = try folders()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let pgWal = root + "/pg_wal"
        try FileManager.default.createDirectory(atPath: pgWal, withIntermediateDirectories: true)
        // A 1 MiB "segment size": 4096 segments per log, so ...00000100 is a valid name.
        let names = ["000000010000000000000100", "000000010000000000000102"]
        for name in names {
            FileManager.default.createFile(atPath: pgWal + "/" + name, contents: Data(count: 1 << 20))
            #expect(try shell(substitute(WALArchiveCommands.archive(directory: archive), path: "pg_wal/" + name, file: name), in: root) == 0)
        }
        FileManager.default.createFile(atPath: archive + "/000000010000000000000102", contents: Data(count: 10))
        FileManager.default.createFile(atPath: archive + "/000000010000000000000101.partial.gz", contents: Data(count: 10))
        let contents = try WALArchive(directory: archive).scan()
        #expect(contents.segmentSize == 1 << 20)
        #expect(contents.segments.map(\.name) == names)
        #expect(contents.partials.map(\.name) == ["000000010000000000000101"])
        let start = try #require(contents.oldest)
        let end = try #require(contents.newest)
        #expect(WALArchive.gaps(in: contents.segments, from: start, to: end).map(\.name) == ["000000010000000000000101"])
    }

    @Test("pg_archivecleanup -x .gz removes old segments in both forms")
    func cleanup() throws {
        let tool = "/usr/lib/postgresql/15/bin/pg_archivecleanup"
        guard FileManager.default.isExecutableFile(atPath: tool) else { return }
        let (root, archive) = try folders()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let names = [
            "000000010000000000000001", "000000010000000000000002.gz", "000000010000000000000002.partial.gz", "000000010000000000000003.gz",
            "000000010000000000000004", "00000002.history.gz",
        ]
        for name in names { FileManager.default.createFile(atPath: archive + "/" + name, contents: Data("x".utf8)) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-x", ".gz", archive, "000000010000000000000003"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let left = try FileManager.default.contentsOfDirectory(atPath: archive).sorted()
        #expect(left == ["000000010000000000000003.gz", "000000010000000000000004", "00000002.history.gz"])
    }
}
