import Foundation
import MeltyPluginABI

/// A page a plugin adds to the Studio (ABI 1.5 `mb_studio_page`), checked at load.
public struct PluginStudioPage: Sendable, Equatable {
    /// Path segment below `/dashboard/plugins/<plugin>/`, `[a-z0-9_-]`.
    public let id: String
    /// Navigation label.
    public let title: String
    /// Module path inside the plugin's Studio folder (`pages/items.js`).
    public let module: String
}

/// A command a plugin adds to the command line (ABI 1.5 `mb_cli_command`), checked at load.
public struct PluginCommand: Sendable, Equatable {
    /// `meltybase <plugin> <name>`, `[a-z0-9-]`.
    public let name: String
    /// One line for `meltybase <plugin> --help`.
    public let summary: String
    /// Full usage text for `meltybase <plugin> <name> --help`.
    public let help: String
}

/// A plugin's Studio folder as the kernel read it at load: served under
/// `/dashboard/plugins/<plugin>/assets/<version>/`.
struct PluginStudio: Sendable {
    /// Absolute path of the folder.
    let directory: String
    /// Its files and their version.
    let files: StudioFileSet
}

/// What a plugin declares beyond serving requests (ABI 1.5): Studio pages and their folder,
/// commands, and whether it reports its health. Read and checked before `init` runs; a
/// descriptor whose `struct_size` ends before these fields declares none of them.
struct PluginExtensions: Sendable {
    var pages: [PluginStudioPage] = []
    var commands: [PluginCommand] = []
    var studio: PluginStudio? = nil
    /// The descriptor has `cli_run`.
    var runsCommands = false
    /// The descriptor has `health`.
    var reportsHealth = false

    /// Largest number of pages and commands a descriptor may list.
    static let maxPages = 32
    static let maxCommands = 64

    /// A refusal reason, for ``PluginLoadError``.
    struct Refusal: Error {
        let reason: String
    }

    /// Reads and checks the 1.5 fields of `descriptor`; `libraryPath` anchors `studio_directory`.
    static func read(_ descriptor: UnsafePointer<mb_plugin_descriptor>, libraryPath: String) throws(Refusal) -> PluginExtensions {
        var result = PluginExtensions()
        let value = descriptor.pointee
        if PluginDescriptorLayout.has(\.health, in: descriptor) { result.reportsHealth = value.health != nil }
        if PluginDescriptorLayout.has(\.cli_run, in: descriptor) { result.runsCommands = value.cli_run != nil }
        if PluginDescriptorLayout.has(\.studio_directory, in: descriptor), let pointer = value.studio_directory {
            let relative = String(cString: pointer)
            guard isRelativePath(relative) else {
                throw Refusal(
                    reason:
                        "descriptor field studio_directory: expected a relative path of A-Z, a-z, 0-9, '.', '_', '-' and '/' without '..' or a leading '/', found \"\(relative)\"")
            }
            let libraryFolder = URL(fileURLWithPath: libraryPath).standardizedFileURL.deletingLastPathComponent()
            let folder = libraryFolder.appendingPathComponent(relative, isDirectory: true).standardizedFileURL.path
            do {
                result.studio = PluginStudio(directory: folder, files: try StudioFileSet(directory: folder, limits: .plugin))
            } catch {
                throw Refusal(reason: "descriptor field studio_directory: \(error.description) (the folder is relative to the plugin library's folder \(libraryFolder.path))")
            }
        }
        if PluginDescriptorLayout.has(\.studio_pages, in: descriptor), let list = value.studio_pages {
            result.pages = try readPages(list, studio: result.studio)
        }
        if PluginDescriptorLayout.has(\.cli_commands, in: descriptor), let list = value.cli_commands {
            result.commands = try readCommands(list)
            if !result.commands.isEmpty && !result.runsCommands {
                throw Refusal(reason: "descriptor field cli_run: expected a callback because cli_commands lists \(result.commands.count) command(s), found NULL")
            }
        }
        return result
    }

    private static func readPages(_ list: UnsafePointer<UnsafePointer<mb_studio_page>?>, studio: PluginStudio?) throws(Refusal) -> [PluginStudioPage] {
        try readList(list, field: "studio_pages", noun: "pages", max: maxPages, size: \.struct_size) { page, field, pages throws(Refusal) in
            guard let idPointer = page.pointee.id, let titlePointer = page.pointee.title, let modulePointer = page.pointee.module else {
                throw Refusal(reason: "descriptor field \(field): expected id, title and module strings, found NULL")
            }
            let id = String(cString: idPointer), title = String(cString: titlePointer), module = String(cString: modulePointer)
            guard PluginLoader.isValidName(id) else {
                throw Refusal(reason: "descriptor field \(field).id: expected 1 to 63 characters of a-z, 0-9, '-' and '_', found \"\(id)\"")
            }
            guard !pages.contains(where: { $0.id == id }) else {
                throw Refusal(reason: "descriptor field \(field).id: expected a unique page id, found \"\(id)\" twice")
            }
            guard !title.isEmpty, title.utf8.count <= 64 else {
                throw Refusal(reason: "descriptor field \(field).title: expected 1 to 64 bytes of text, found \(title.utf8.count) bytes")
            }
            guard isRelativePath(module) else {
                throw Refusal(
                    reason: "descriptor field \(field).module: expected a relative path of A-Z, a-z, 0-9, '.', '_', '-' and '/' without '..' or a leading '/', found \"\(module)\"")
            }
            guard let studio else {
                throw Refusal(reason: "descriptor field studio_directory: expected the folder holding \(field).module \"\(module)\", found NULL")
            }
            guard studio.files.files[module] != nil else {
                throw Refusal(reason: "descriptor field \(field).module: expected a file in \(studio.directory), found no \"\(module)\" there")
            }
            return PluginStudioPage(id: id, title: title, module: module)
        }
    }

    private static func readCommands(_ list: UnsafePointer<UnsafePointer<mb_cli_command>?>) throws(Refusal) -> [PluginCommand] {
        try readList(list, field: "cli_commands", noun: "commands", max: maxCommands, size: \.struct_size) { command, field, commands throws(Refusal) in
            guard let namePointer = command.pointee.name, let summaryPointer = command.pointee.summary else {
                throw Refusal(reason: "descriptor field \(field): expected name and summary strings, found NULL")
            }
            let name = String(cString: namePointer), summary = String(cString: summaryPointer)
            guard isCommandName(name) else {
                throw Refusal(reason: "descriptor field \(field).name: expected 1 to 63 characters of a-z, 0-9 and '-', not starting with '-', found \"\(name)\"")
            }
            guard !commands.contains(where: { $0.name == name }) else {
                throw Refusal(reason: "descriptor field \(field).name: expected a unique command name, found \"\(name)\" twice")
            }
            let help = command.pointee.help.map { String(cString: $0) } ?? summary
            return PluginCommand(name: name, summary: summary, help: help)
        }
    }

    /// Reads a NULL-terminated, plugin-owned list of at most `max` entries, each checked for
    /// its `struct_size` before `read` turns it into an item (given the entry, its field name
    /// such as `studio_pages[2]`, and the items read so far, for uniqueness checks).
    private static func readList<Entry, Item>(
        _ list: UnsafePointer<UnsafePointer<Entry>?>, field name: String, noun: String, max: Int, size: KeyPath<Entry, Int>,
        _ read: (UnsafePointer<Entry>, String, [Item]) throws(Refusal) -> Item
    ) throws(Refusal) -> [Item] {
        var items: [Item] = []
        var cursor = list
        while let entry = cursor.pointee {
            let field = "\(name)[\(items.count)]"
            guard items.count < max else { throw Refusal(reason: "descriptor field \(name): expected at most \(max) \(noun) and a NULL terminator, found more") }
            guard entry.pointee[keyPath: size] >= MemoryLayout<Entry>.size else {
                throw Refusal(reason: "descriptor field \(field).struct_size: expected at least \(MemoryLayout<Entry>.size), found \(entry.pointee[keyPath: size])")
            }
            items.append(try read(entry, field, items))
            cursor += 1
        }
        return items
    }

    /// `[a-z0-9-]`, 1 to 63 characters, not starting with "-".
    static func isCommandName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 63 && !text.hasPrefix("-")
            && text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    /// A path below a folder: `[A-Za-z0-9._/-]`, no leading "/", no empty, "." or ".."
    /// segment and no dotfile segment.
    static func isRelativePath(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 512, !text.hasPrefix("/") else { return false }
        let allowed = text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-" || $0 == "/"
        }
        guard allowed else { return false }
        return text.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && !$0.hasPrefix(".") }
    }
}
