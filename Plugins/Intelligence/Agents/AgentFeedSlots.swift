import Synchronization

/// The open `GET /runs/<id>/events` feeds of one portal, counted so that a caller cannot hold
/// unbounded streams (each polls the database): at most `perPortal` at once, and `perSubject`
/// per caller. A feed holds an ``AgentFeedSlot`` and gives it back when the slot is released.
final class AgentFeedSlots: Sendable {
    /// The most feeds open at once in the portal.
    let perPortal: Int
    /// The most feeds one caller (`user:<id>`, `service_role`, `admin:<id>`) holds at once.
    let perSubject: Int

    private struct Counts {
        var total = 0
        var bySubject: [String: Int] = [:]
    }
    private let counts = Mutex(Counts())

    /// Slots with these limits.
    init(perPortal: Int = 64, perSubject: Int = 8) {
        self.perPortal = perPortal
        self.perSubject = perSubject
    }

    /// A slot for `subject`, or the 429 refusal when a limit is reached.
    func take(subject: String) -> Result<AgentFeedSlot, AgentRefusal> {
        let refusal: String? = counts.withLock { counts in
            if counts.total >= perPortal { return "this portal already streams \(perPortal) agent event feeds" }
            if counts.bySubject[subject, default: 0] >= perSubject { return "you already hold \(perSubject) agent event feeds open" }
            counts.total += 1
            counts.bySubject[subject, default: 0] += 1
            return nil
        }
        if let refusal {
            return .failure(AgentRefusal(429, "too_many_feeds", refusal, hint: "close a feed (or wait for its run to end) and retry"))
        }
        return .success(AgentFeedSlot(slots: self, subject: subject))
    }

    fileprivate func give(subject: String) {
        counts.withLock { counts in
            counts.total = max(0, counts.total - 1)
            let left = counts.bySubject[subject, default: 1] - 1
            counts.bySubject[subject] = left > 0 ? left : nil
        }
    }
}

/// One open feed's place in ``AgentFeedSlots``, given back when released (also when the
/// stream never started: its closure, and with it the slot, was dropped).
final class AgentFeedSlot: Sendable {
    private let slots: AgentFeedSlots
    private let subject: String

    fileprivate init(slots: AgentFeedSlots, subject: String) {
        self.slots = slots
        self.subject = subject
    }

    deinit { slots.give(subject: subject) }
}
