/// How long a supervisor waits before restarting a child that died: the kernel worker
/// (`meltybase serve`'s supervisor) and the embedded Postgres and Redis use this one schedule.
///
/// The first death restarts at once (a trap costs the time to start a kernel, nothing
/// more). A worker that keeps dying is restarted after 0.5, 1, 2, then every 5 seconds,
/// so a crash loop does not burn the machine; a worker that stayed up for
/// `stableAfterSeconds` counts as healthy again and its next death restarts at once.
public struct RestartBackoff: Sendable, Equatable {
    /// Delays for the 1st, 2nd, ... consecutive death; the last one repeats.
    public let delays: [Double]
    /// Uptime after which a worker's death no longer counts as part of a crash loop.
    public let stableAfterSeconds: Double
    /// Deaths in a row, each after less than `stableAfterSeconds` of uptime.
    public private(set) var consecutiveDeaths = 0

    /// The default schedule: 0, 0.5, 1, 2, 5 s, reset after 30 s up.
    public init(delays: [Double] = [0, 0.5, 1, 2, 5], stableAfterSeconds: Double = 30) {
        self.delays = delays.isEmpty ? [0] : delays
        self.stableAfterSeconds = stableAfterSeconds
    }

    /// Records a death after `uptime` seconds and returns the delay before the restart.
    public mutating func delay(afterUptime uptime: Double) -> Double {
        if uptime >= stableAfterSeconds { consecutiveDeaths = 0 }
        let delay = delays[min(consecutiveDeaths, delays.count - 1)]
        consecutiveDeaths += 1
        return delay
    }
}
