import Synchronization

/// A token bucket: `rate` events per second on average, bursts up to `burst`. Thread-safe.
public final class TokenBucket: Sendable {
    /// Events per second.
    public let rate: Double
    /// Largest burst.
    public let burst: Double
    private let state: Mutex<(tokens: Double, at: ContinuousClock.Instant)>

    /// A full bucket.
    public init(rate: Double, burst: Double) {
        self.rate = max(0, rate)
        self.burst = max(1, burst)
        state = Mutex((max(1, burst), ContinuousClock.now))
    }

    /// Takes `count` tokens if there are enough; false (and nothing taken) otherwise.
    public func take(_ count: Double = 1) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            let elapsed = now - state.at
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            state.tokens = min(burst, state.tokens + seconds * rate)
            state.at = now
            guard state.tokens >= count else { return false }
            state.tokens -= count
            return true
        }
    }
}
