import Synchronization

/// Publishes the id of the last committed event and wakes readers waiting for more (live SSE
/// tails, read-your-writes). Readers then read the new events from storage: the notifier carries
/// no events, so a slow reader can never make the writer wait or lose anything.
///
/// Thread-safe: all state is behind one `Mutex`.
public final class CommitNotifier: Sendable {
    private struct State {
        var last: EventID
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var released: Set<UInt64> = []
        var nextToken: UInt64 = 0
    }

    private let state: Mutex<State>

    init(last: EventID) {
        state = Mutex(State(last: last))
    }

    /// The id of the last committed event.
    public var lastCommitted: EventID { state.withLock { $0.last } }

    func publish(_ last: EventID) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            precondition(last >= s.last, "committed id went backwards: \(s.last) -> \(last)")
            s.last = last
            let all = Array(s.waiters.values)
            s.waiters.removeAll()
            return all
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Lowers the last committed id after a truncation (a follower dropping a divergent tail).
    /// Waiters keep waiting for ids after their own, which new events will reach again.
    func rewind(to last: EventID) {
        state.withLock { s in s.last = min(s.last, last) }
    }

    /// Waits until an event after `id` is committed, the timeout passes or the task is cancelled;
    /// returns the last committed id then (which may still be `<= id`).
    public func wait(after id: EventID, timeout: Duration) async -> EventID {
        let token: UInt64? = state.withLock { s in
            if s.last > id { return nil }
            s.nextToken += 1
            return s.nextToken
        }
        guard let token else { return lastCommitted }
        let timer = Task {
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self.release(token)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.last > id || s.released.remove(token) != nil { return true }
                    s.waiters[token] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.release(token)
        }
        timer.cancel()
        await timer.value  // so a late timer cannot leave its token behind
        state.withLock { _ = $0.released.remove(token) }
        return lastCommitted
    }

    private func release(_ token: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiters.removeValue(forKey: token) { return w }
            s.released.insert(token)
            return nil
        }
        waiter?.resume()
    }
}
