import Foundation
import Testing

@testable import Kernel

@Suite("[backup] in plugins.toml")
struct BackupConfigTests {
    let loader = ConfigLoader(environment: [:])

    @Test("defaults: enabled, 60 s archive timeout, daily base backups, 7 kept for 14 days")
    func defaults() throws {
        let backup = try loader.parse("", path: "/srv/mb/plugins.toml").backup
        #expect(backup.enabled && backup.directory == nil)
        #expect(backup.archiveTimeoutSeconds == 60 && backup.baseBackupIntervalHours == 24)
        #expect(backup.keepCount == 7 && backup.keepDays == 14)
    }

    @Test("every key is read; a relative directory resolves against the file's folder")
    func keys() throws {
        let text = """
            [backup]
            enabled = false
            directory = "backups-here"
            archive_timeout_seconds = 5
            base_backup_interval_hours = 0
            keep_count = 2
            keep_days = 0
            """
        let backup = try loader.parse(text, path: "/srv/mb/plugins.toml").backup
        #expect(!backup.enabled && backup.directory == "/srv/mb/backups-here")
        #expect(backup.archiveTimeoutSeconds == 5 && backup.baseBackupIntervalHours == 0 && backup.keepCount == 2 && backup.keepDays == 0)
    }

    @Test("unknown keys and out-of-range values name the key")
    func refusals() {
        for (text, key) in [
            ("[backup]\nkeep = 3\n", "backup.keep"), ("[backup]\narchive_timeout_seconds = 0\n", "backup.archive_timeout_seconds"),
            ("[backup]\narchive_timeout_seconds = 3601\n", "backup.archive_timeout_seconds"), ("[backup]\nkeep_count = 0\n", "backup.keep_count"),
            ("[backup]\ndirectory = \"\"\n", "backup.directory"), ("[backup]\nenabled = \"yes\"\n", "backup.enabled"),
        ] {
            let error = #expect(throws: ConfigError.self) { try loader.parse(text, path: "/p.toml") }
            #expect(error?.key == key, "\(text)")
        }
    }
}
