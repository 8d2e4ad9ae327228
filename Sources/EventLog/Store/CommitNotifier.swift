/// Publishes the id of the last committed event and wakes readers waiting for more (live SSE
/// tails, read-your-writes). Readers then read the new events from storage: the notifier carries
/// no events, so a slow reader can never make the writer wait or lose anything.
public final class CommitNotifier: Sendable {
    private let last: WaitableState<EventID>

    init(last: EventID) {
        self.last = WaitableState(last)
    }

    /// The id of the last committed event.
    public var lastCommitted: EventID { last.withState { $0 } }

    func publish(_ id: EventID) {
        last.update { last in
            precondition(id >= last, "committed id went backwards: \(last) -> \(id)")
            last = id
        }
    }

    /// Lowers the last committed id after a truncation (a follower dropping a divergent tail).
    /// Waiters keep waiting for ids after their own, which new events will reach again.
    func rewind(to id: EventID) {
        last.withState { $0 = min($0, id) }
    }

    /// Waits until an event after `id` is committed, the timeout passes or the task is cancelled;
    /// returns the last committed id then (which may still be `<= id`).
    public func wait(after id: EventID, timeout: Duration) async -> EventID {
        await last.wait(timeout: timeout) { $0 > id }
    }
}
