import Synchronization

/// State behind one lock that tasks can wait on: a task parks until a condition over the state
/// holds, a timeout passes or it is cancelled. The condition is checked under the same lock as
/// every change, so no wake-up is lost between checking and parking. One implementation of
/// "wait for the log to grow" (`CommitNotifier`) and "wait for replicas" (the server's
/// replication state).
///
/// Thread-safe: all state is behind one `Mutex`.
public final class WaitableState<State: Sendable>: Sendable {
    private struct Waiter {
        var ready: @Sendable (State) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct Inner {
        var state: State
        var waiters: [UInt64: Waiter] = [:]
        /// Tokens whose timeout or cancellation came before they parked.
        var released: Set<UInt64> = []
        var nextToken: UInt64 = 0
    }

    private let inner: Mutex<Inner>

    public init(_ state: State) {
        inner = Mutex(Inner(state: state))
    }

    /// Reads or changes the state without waking anyone (a change no waiter's condition
    /// depends on).
    public func withState<R>(_ body: (inout State) throws -> R) rethrows -> R {
        try inner.withLock { try body(&$0.state) }
    }

    /// Changes the state, then wakes every waiter whose condition now holds.
    @discardableResult
    public func update<R>(_ body: (inout State) throws -> R) rethrows -> R {
        let (result, woken) = try inner.withLock { s -> (R, [CheckedContinuation<Void, Never>]) in
            let result = try body(&s.state)
            var woken: [CheckedContinuation<Void, Never>] = []
            for (token, waiter) in s.waiters where waiter.ready(s.state) {
                s.waiters.removeValue(forKey: token)
                woken.append(waiter.continuation)
            }
            return (result, woken)
        }
        for continuation in woken { continuation.resume() }
        return result
    }

    /// Wakes every waiter, whatever its condition (each re-checks what it waited for).
    public func wakeAll() {
        let woken = inner.withLock { s -> [CheckedContinuation<Void, Never>] in
            let all = s.waiters.values.map(\.continuation)
            s.waiters.removeAll()
            return all
        }
        for continuation in woken { continuation.resume() }
    }

    /// Waits until `ready` holds for the state (checked now and after every `update`), the
    /// timeout passes, `wakeAll` is called or the task is cancelled; returns the state then.
    @discardableResult
    public func wait(timeout: Duration, until ready: @escaping @Sendable (State) -> Bool) async -> State {
        let token: UInt64? = inner.withLock { s in
            if ready(s.state) { return nil }
            s.nextToken += 1
            return s.nextToken
        }
        guard let token else { return withState { $0 } }
        let timer = Task {
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self.release(token)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = inner.withLock { s -> Bool in
                    if ready(s.state) || s.released.remove(token) != nil { return true }
                    s.waiters[token] = Waiter(ready: ready, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.release(token)
        }
        timer.cancel()
        await timer.value  // so a late timer cannot leave its token behind
        return inner.withLock { s in
            _ = s.released.remove(token)
            return s.state
        }
    }

    private func release(_ token: UInt64) {
        let waiter = inner.withLock { s -> Waiter? in
            if let w = s.waiters.removeValue(forKey: token) { return w }
            s.released.insert(token)
            return nil
        }
        waiter?.continuation.resume()
    }
}
