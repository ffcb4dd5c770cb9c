import Synchronization

/// What a pool's workers used, for the Hub's metering: CPU time and memory × time.
public struct EdgeUsage: Sendable, Equatable {
    /// CPU time (user + system) the workers spent, in milliseconds.
    public var cpuMilliseconds: Int
    /// Resident memory × wall-clock time of the requests, in megabyte-milliseconds
    /// (1 GB-s = 1,024,000 MB-ms).
    public var megabyteMilliseconds: Int

    /// `cpuMilliseconds` of CPU and `megabyteMilliseconds` of memory × time.
    public init(cpuMilliseconds: Int = 0, megabyteMilliseconds: Int = 0) {
        self.cpuMilliseconds = cpuMilliseconds
        self.megabyteMilliseconds = megabyteMilliseconds
    }
}

/// One worker's metering state: the CPU time already reported (from READY on, so the boot
/// is not billed) and its latest resident size.
final class WorkerUsageMeter: Sendable {
    private struct State {
        var reportedCPU: Int?
        var residentMegabytes = 0
    }
    private let state = Mutex(State())

    /// Takes `usage` as the baseline (the worker just answered READY).
    func start(_ usage: ProcessUsage?) {
        guard let usage else { return }
        state.withLock { state in
            state.reportedCPU = usage.cpuMilliseconds
            state.residentMegabytes = usage.residentBytes >> 20
        }
    }

    /// The CPU milliseconds used since the last report (never negative), remembering `usage`.
    func cpuSinceLastReport(_ usage: ProcessUsage) -> Int {
        state.withLock { state in
            state.residentMegabytes = usage.residentBytes >> 20
            guard let reported = state.reportedCPU else {
                state.reportedCPU = usage.cpuMilliseconds
                return 0
            }
            state.reportedCPU = max(reported, usage.cpuMilliseconds)
            return max(0, usage.cpuMilliseconds - reported)
        }
    }

    /// The worker's latest resident size in megabytes.
    var residentMegabytes: Int { state.withLock { $0.residentMegabytes } }
}
