import MeltyEd25519

/// The outcome of ``AuditChain/verify(on:trustedPublicKey:pageSize:)``: how much was
/// checked and the first problem found, if any.
public struct AuditVerification: Sendable, Equatable {
    /// The first thing wrong with the log, named by the entry where it shows.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The entry to look at (for a cut tail: the first missing one).
        public var seq: Int64
        /// What is wrong, in words.
        public var description: String
    }

    /// Entries whose hash and link were checked (all of them when the log is intact).
    public var entries: Int
    /// Checkpoints whose signature and position were checked.
    public var checkpointsChecked: Int
    /// The last intact entry's seq (0 for an empty log).
    public var headSeq: Int64
    /// Whether checkpoint signatures were checked against a key the caller trusts
    /// (`false`: only against the public key stored in each checkpoint row).
    public var trustedKey: Bool
    /// The first problem in seq order, or `nil`.
    public var problem: Problem?

    /// `true` when no problem was found.
    public var ok: Bool { problem == nil }
}

extension AuditChain {
    /// Walks the whole chain in seq order (`pageSize` rows per query) inside one
    /// read-only repeatable-read transaction of its own, then every checkpoint, and
    /// reports the first problem by seq:
    ///
    /// - a missing entry (a gap in seq: deleted),
    /// - a broken link (`prev_hash` is not the previous entry's hash: inserted, removed,
    ///   reordered or replaced entries),
    /// - a modified entry (its hash does not match its contents),
    /// - a checkpoint whose signature does not verify, or that was signed by another key,
    /// - a cut tail (a checkpoint covers an entry past the end of the log),
    /// - a rewritten chain (a checkpoint's head hash differs from the entry's hash now).
    ///
    /// `trustedPublicKey` is the instance's audit key (``AuditSigningKey.loadPublicKey(directory:)``);
    /// without it, each checkpoint is checked only against the key stored in its own row.
    public static func verify(
        on connection: PostgresConnection, trustedPublicKey: [UInt8]? = nil, pageSize: Int = 1000
    ) async throws -> AuditVerification {
        // A COMMIT below must not end a transaction the caller opened.
        guard !isInTransactionBlock(connection) else {
            throw AuditError("AuditChain.verify runs in a transaction of its own; call it outside BEGIN ... COMMIT")
        }
        try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            let result = try await walk(connection, trustedPublicKey: trustedPublicKey, pageSize: max(pageSize, 1))
            try await connection.query("COMMIT")
            return result
        } catch {
            _ = try? await connection.query("ROLLBACK")
            throw error
        }
    }

    private static func walk(_ connection: PostgresConnection, trustedPublicKey: [UInt8]?, pageSize: Int) async throws -> AuditVerification {
        var expectedSeq: Int64 = 1
        var previousHash = AuditEntry.genesisHash
        var hashBeforePrevious: String?
        var entries = 0
        var chainProblem: AuditVerification.Problem?
        var after = Int64.min

        pages: while true {
            let rows = try await connection.query(
                "SELECT \(entryColumns) FROM meltybase.audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                [String(after), String(pageSize)])
            for index in rows.rows.indices {
                guard let seq = rows.value("seq", row: index).flatMap({ Int64($0) }) else { continue }
                after = seq
                if let problem = checkEntry(rows, index, seq: seq, expectedSeq: expectedSeq, previousHash: previousHash, hashBeforePrevious: hashBeforePrevious) {
                    chainProblem = problem
                    break pages
                }
                entries += 1
                hashBeforePrevious = previousHash
                previousHash = rows.value("hash", row: index) ?? ""
                expectedSeq = seq + 1
            }
            if rows.rows.count < pageSize { break }
        }
        let headSeq = expectedSeq - 1

        // Checkpoints at or past a chain problem cannot be judged; earlier ones can.
        var checkpointProblem: AuditVerification.Problem?
        var checked = 0
        var afterID = Int64.min
        while true {
            let rows = try await connection.query(
                """
                SELECT c.id, \(timestamp("c.at")) AS at, c.seq, c.head_hash, c.signature, c.public_key, l.hash AS entry_hash
                FROM meltybase.audit_checkpoints c LEFT JOIN meltybase.audit_log l ON l.seq = c.seq
                WHERE c.id > $1 ORDER BY c.id LIMIT $2
                """, [String(afterID), String(pageSize)])
            for (index, checkpoint) in checkpoints(from: rows).enumerated() {
                afterID = checkpoint.id
                if let chainProblem, checkpoint.seq >= chainProblem.seq { continue }
                checked += 1
                let found = checkCheckpoint(checkpoint, entryHash: rows.value("entry_hash", row: index), headSeq: headSeq, trustedPublicKey: trustedPublicKey)
                if let found, found.seq < (checkpointProblem?.seq ?? .max) { checkpointProblem = found }
            }
            if rows.rows.count < pageSize { break }
        }

        var problem = chainProblem
        if let checkpointProblem, checkpointProblem.seq < (chainProblem?.seq ?? .max) { problem = checkpointProblem }
        return AuditVerification(
            entries: entries, checkpointsChecked: checked, headSeq: headSeq, trustedKey: trustedPublicKey != nil, problem: problem)
    }

    /// Position, link and hash of one row, in that order: the first failing check names the problem.
    private static func checkEntry(
        _ rows: PostgresRows, _ index: Int, seq: Int64, expectedSeq: Int64, previousHash: String, hashBeforePrevious: String?
    ) -> AuditVerification.Problem? {
        typealias Problem = AuditVerification.Problem
        if seq > expectedSeq {
            let missing = seq - 1 == expectedSeq ? "entry #\(expectedSeq) is missing" : "entries #\(expectedSeq)-#\(seq - 1) are missing"
            let context = expectedSeq == 1 ? "the log starts at #\(seq)" : "the log goes from #\(expectedSeq - 1) to #\(seq)"
            return Problem(seq: expectedSeq, description: "\(missing): \(context) (deleted)")
        }
        if seq < expectedSeq {
            return Problem(seq: seq, description: "entry #\(seq) is out of order: expected #\(expectedSeq)")
        }
        let prevHash = rows.value("prev_hash", row: index) ?? ""
        if prevHash != previousHash {
            if seq >= 3, prevHash == hashBeforePrevious {
                return Problem(seq: seq - 1, description: "entry #\(seq - 1) was inserted: entry #\(seq) links to entry #\(seq - 2), not to it")
            }
            if seq == 1 {
                return Problem(seq: 1, description: "entry #1 does not start the chain: its prev_hash is not the genesis hash (entries before it were removed, or it was replaced)")
            }
            return Problem(
                seq: seq,
                description: "entry #\(seq) does not link to entry #\(seq - 1): its prev_hash is not that entry's hash (entries were inserted, removed, replaced or reordered here)"
            )
        }
        let entry: AuditEntry
        do {
            entry = try AuditChain.entry(rows, index)
        } catch {
            return Problem(seq: seq, description: "entry #\(seq) was modified: \(error)")
        }
        if entry.computedHash != entry.hash {
            return Problem(seq: seq, description: "entry #\(seq) was modified: its hash does not match its contents")
        }
        return nil
    }

    private static func checkCheckpoint(
        _ checkpoint: AuditCheckpoint, entryHash: String?, headSeq: Int64, trustedPublicKey: [UInt8]?
    ) -> AuditVerification.Problem? {
        typealias Problem = AuditVerification.Problem
        let name = "checkpoint #\(checkpoint.id) (written \(checkpoint.at))"
        if let trustedPublicKey, checkpoint.publicKey.lowercased() != ByteEncoding.hex(trustedPublicKey) {
            return Problem(
                seq: checkpoint.seq,
                description:
                    "\(name) over entry #\(checkpoint.seq) names public key \(checkpoint.publicKey.prefix(16))..., not this instance's audit key \(ByteEncoding.hex(trustedPublicKey).prefix(16))...: it was not written by this instance"
            )
        }
        guard let key = trustedPublicKey ?? ByteEncoding.fromHex(checkpoint.publicKey),
            checkpoint.signatureVerifies(publicKey: key)
        else {
            let which = trustedPublicKey == nil ? "the public key stored with it" : "this instance's audit key"
            return Problem(seq: checkpoint.seq, description: "\(name) over entry #\(checkpoint.seq) has a signature that does not verify with \(which)")
        }
        if checkpoint.seq > headSeq {
            let missing = headSeq + 1 == checkpoint.seq ? "entry #\(checkpoint.seq) was" : "entries #\(headSeq + 1)-#\(checkpoint.seq) were"
            return Problem(seq: headSeq + 1, description: "the log ends at entry #\(headSeq) but \(name) covers entry #\(checkpoint.seq): \(missing) cut off")
        }
        if checkpoint.seq < 1 {
            return Problem(seq: 1, description: "\(name) covers no entry (seq \(checkpoint.seq))")
        }
        if entryHash != checkpoint.headHash {
            return Problem(seq: checkpoint.seq, description: "entry #\(checkpoint.seq) does not match \(name): the chain was rewritten at or before this entry")
        }
        return nil
    }
}
