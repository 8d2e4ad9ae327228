import BanyanClient
import Synchronization

/// Delivers signals to the `wait_for_signal` attempts of every run an engine drives, with one
/// reader of the log for all of them (`GET /v1/events?type=workflow.run.signaled`, every poll
/// interval while anything waits), so a thousand waiting approvals cost one request per interval,
/// not a thousand.
///
/// A waiter registers before it looks the signal up by key, and the reader starts at the log's end
/// as it was before the first registration: a signal recorded before the look-up is found by it,
/// one recorded after is read by the reader. Nothing is missed in between.
final class SignalWatcher: Sendable {
    private struct State {
        var waiters: [String: [UInt64: CheckedContinuation<WorkflowValue?, Never>]] = [:]
        var nextToken: UInt64 = 0
        var reading = false
        /// Where the reader goes on from (nil: not started yet).
        var cursor: UInt64?
        var timers: [UInt64: Task<Void, Never>] = [:]
    }

    private let state = Mutex(State())
    let client: BanyanHTTPClient
    /// The type of the events waited for (`workflow.run.signaled`, `workflow.run.cancel_requested`).
    let type: String
    let interval: Duration
    let log: @Sendable (String) -> Void

    init(client: BanyanHTTPClient, type: String, interval: Duration, log: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.type = type
        self.interval = interval
        self.log = log
    }

    /// The signal event's payload (`{"run", ..., "signal", "payload"}`) once the log has `key`;
    /// nil when `deadline` (Unix nanoseconds) passes first. Cancellation ends the wait with nil.
    /// `lookUp: false` when the caller read the log for `key` after `prepare()` returned:
    /// anything recorded since is the reader's.
    /// `registered` is called once the waiter is registered: from then on the reader delivers
    /// whatever is recorded for `key`.
    func wait(for key: String, deadlineUnixNano: Int64?, lookUp: Bool = true, registered: @Sendable () -> Void = {}) async throws -> WorkflowValue? {
        let token = state.withLock { s -> UInt64 in
            s.nextToken += 1
            return s.nextToken
        }
        try await prepare()
        let result: WorkflowValue? = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<WorkflowValue?, Never>) in
                let start = state.withLock { s -> Bool? in
                    // A cancellation is seen here, or `onCancel` (same lock) finds the waiter.
                    if Task.isCancelled { return nil }
                    s.waiters[key, default: [:]][token] = c
                    // Under the lock the reader stops in: it cannot stop between the two.
                    defer { s.reading = true }
                    return !s.reading
                }
                guard let start else {
                    registered()
                    c.resume(returning: nil)
                    return
                }
                if start { Task { await self.read() } }
                registered()
                // Registered: now the look-up, and the deadline.
                if lookUp {
                    Task {
                        if let found = try? await self.lookUp(key) { self.deliver(key, found) }
                    }
                }
                if let deadlineUnixNano {
                    let timer = Task {
                        let remaining = deadlineUnixNano - Engine.nowUnixNano()
                        if remaining > 0 { try? await Task.sleep(for: .nanoseconds(remaining)) }
                        guard !Task.isCancelled else { return }
                        self.resume(key, token, nil)
                    }
                    state.withLock { $0.timers[token] = timer }
                }
            }
        } onCancel: {
            self.resume(key, token, nil)
        }
        // No sleeper left behind once the wait is over.
        state.withLock { $0.timers.removeValue(forKey: token) }?.cancel()
        return result
    }

    private func lookUp(_ key: String) async throws -> WorkflowValue? {
        guard let bytes = try await client.event(key: key) else { return nil }
        do { return try JSONText.parse(bytes)["payload"] } catch { throw Engine.EngineError.log("\(error)") }
    }

    /// Ends one waiter's wait with `value` (if it still waits).
    private func resume(_ key: String, _ token: UInt64, _ value: WorkflowValue?) {
        let c = state.withLock { s -> CheckedContinuation<WorkflowValue?, Never>? in
            let c = s.waiters[key]?.removeValue(forKey: token)
            if s.waiters[key]?.isEmpty == true { s.waiters[key] = nil }
            return c
        }
        c?.resume(returning: value)
    }

    /// Ends every wait for `key` with the signal.
    private func deliver(_ key: String, _ payload: WorkflowValue) {
        let all = state.withLock { s -> [CheckedContinuation<WorkflowValue?, Never>] in
            let all = s.waiters[key].map { Array($0.values) } ?? []
            s.waiters[key] = nil
            return all
        }
        for c in all { c.resume(returning: payload) }
    }

    /// The first time: the reader's start, the log's end before any waiter registered (tried
    /// until the server answers: a wait must not fail for a moment without it).
    func prepare() async throws {
        var pause = Duration.milliseconds(100)
        while state.withLock({ $0.cursor == nil }) {
            do {
                let last = try await RunEvents.lastID(client)
                state.withLock { s in if s.cursor == nil { s.cursor = last } }
            } catch {
                log("reading the log's end for signals: \(error)")
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
    }

    /// Reads new signals while anything waits, then stops.
    private func read() async {
        while true {
            try? await Task.sleep(for: interval)
            let cursor = state.withLock { s -> UInt64? in
                if s.waiters.isEmpty {
                    s.reading = false
                    return nil
                }
                return s.cursor
            }
            guard let cursor else { return }
            // To the log's end each time: after a quiet stretch the cursor may be far behind.
            do {
                let next = try await RunEvents.readPages(client, after: cursor, type: type, limit: 1_000) { events in
                    for event in events { if let key = event.key { deliver(key, event.payload) } }
                }
                state.withLock { $0.cursor = max($0.cursor ?? 0, next) }
            } catch {
                log("reading signals: \(error)")
            }
        }
    }
}
