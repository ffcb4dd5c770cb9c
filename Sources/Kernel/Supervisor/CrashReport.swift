import Foundation

/// What the Swift runtime's crash report (the backtrace a worker writes to stderr when it
/// traps or faults) says about plugins.
///
/// The report lists the crashed thread's frames innermost first, each ending
/// `... in <image>` or `... in <image> at <file>:<line>:<column>`:
///
///     Thread 3 "NIO-ELT-0-#1" crashed:
///       0      0x00007f... RestHandler.range(...) + 623 in libDatabasePlugin.so at /src/RestHandler.swift:88:30
///
/// The plugin to blame is the innermost frame whose image is a configured plugin library.
public struct CrashReport: Sendable, Equatable {
    /// Plugin library file names (`libDatabasePlugin.so`) by plugin name.
    public let pluginLibraries: [String: String]

    /// A reader that recognises the libraries of `plugins`.
    public init(plugins: [PluginConfig]) {
        var libraries: [String: String] = [:]
        for plugin in plugins { libraries[plugin.name] = (plugin.path as NSString).lastPathComponent }
        pluginLibraries = libraries
    }

    /// The plugin (name and library) of the innermost plugin frame of the crashed thread
    /// in `text`, or nil when the text holds no crash report or the crash is not in a plugin.
    public func lastPlugin(in text: String) -> (name: String, library: String)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.lastIndex(where: { $0.hasPrefix("Thread ") && $0.hasSuffix(" crashed:") }) else { return nil }
        var framesSeen = false
        for line in lines[(start + 1)...] {
            let frame = line.trimmingCharacters(in: .whitespaces)
            if frame.isEmpty {
                // A blank line follows the header; the next one ends the thread's frames.
                if framesSeen { break }
                continue
            }
            if frame.hasPrefix("Thread ") || frame.hasPrefix("...") { break }
            framesSeen = true
            guard let image = Self.image(ofFrame: frame) else { continue }
            if let name = pluginLibraries.first(where: { $0.value == image })?.key { return (name, image) }
        }
        return nil
    }

    /// The image named by one frame line: the word after the last ` in ` before ` at /`.
    static func image(ofFrame frame: String) -> String? {
        var head = Substring(frame)
        if let location = head.range(of: " at /", options: .backwards) { head = head[..<location.lowerBound] }
        guard let marker = head.range(of: " in ", options: .backwards) else { return nil }
        let image = head[marker.upperBound...].trimmingCharacters(in: .whitespaces)
        return image.isEmpty || image.contains(" ") ? nil : image
    }
}
