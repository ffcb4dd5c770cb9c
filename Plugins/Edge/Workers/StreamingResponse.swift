import Synchronization

/// The rest of a streamed response after its head (``InvocationStart/streaming(status:headers:_:)``):
/// its body, sent once to a sink, in the task that writes to the client. Dropped without
/// being sent, it cancels the function's request.
public final class StreamingResponse: Sendable {
    private let exchange: WorkerExchange
    private let sent = Atomic(false)

    init(_ exchange: WorkerExchange) {
        self.exchange = exchange
    }

    /// Sends the body to `sink` as the function produces it (each chunk credited to the
    /// worker once the sink took it), then `end`, or `abort` when it cannot complete. Only
    /// the first call sends; later ones answer `.clientGone`.
    public func send(to sink: some ResponseSink) async -> InvocationOutcome {
        guard !sent.exchange(true, ordering: .acquiringAndReleasing) else { return .clientGone }
        let outcome = await exchange.sendBody(to: sink)
        exchange.close(outcome)
        return outcome
    }
}
