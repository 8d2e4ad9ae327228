import Synchronization

/// A counting semaphore for async work: at most `count` bodies hold a permit at once; the others
/// wait in arrival order. A waiter cancelled before its turn leaves the line (and its body never
/// runs). Bounds the attempts an engine runs across all of its runs.
final class Permits: Sendable {
    private struct Waiter {
        var token: UInt64
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var free: Int
        var waiters: [Waiter] = []
        var nextToken: UInt64 = 0
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(free: count))
    }

    func holding<T>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async throws {
        let token = state.withLock { s -> UInt64 in
            s.nextToken += 1
            return s.nextToken
        }
        let granted = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                // Under the lock `onCancel` takes: a cancellation is seen here or finds the waiter.
                let now = state.withLock { s -> Bool? in
                    if Task.isCancelled { return false }
                    if s.free > 0 {
                        s.free -= 1
                        return true
                    }
                    s.waiters.append(Waiter(token: token, continuation: c))
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                guard let i = s.waiters.firstIndex(where: { $0.token == token }) else { return nil }
                return s.waiters.remove(at: i)
            }
            waiter?.continuation.resume(returning: false)
        }
        guard granted else { throw CancellationError() }
    }

    private func release() {
        let next = state.withLock { s -> Waiter? in
            if !s.waiters.isEmpty { return s.waiters.removeFirst() }
            s.free += 1
            return nil
        }
        next?.continuation.resume(returning: true)
    }
}
