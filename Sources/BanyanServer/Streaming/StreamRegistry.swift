import EventLog
import Synchronization

/// Open SSE streams and where each one is in the log, for the `streamsMax` bound, the
/// CelestialTree `subscribers` count and the lag metrics. Thread-safe behind one `Mutex`.
public final class StreamRegistry: Sendable {
    private struct State {
        var cursors: [UInt64: EventID] = [:]
        var nextToken: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var count: Int { state.withLock { $0.cursors.count } }

    /// Registers a stream at `cursor`; nil when `max` streams are open.
    func open(at cursor: EventID, max: Int) -> UInt64? {
        state.withLock { s in
            guard s.cursors.count < max else { return nil }
            s.nextToken += 1
            s.cursors[s.nextToken] = cursor
            return s.nextToken
        }
    }

    func advance(_ token: UInt64, to cursor: EventID) {
        state.withLock { $0.cursors[token] = cursor }
    }

    func close(_ token: UInt64) {
        state.withLock { _ = $0.cursors.removeValue(forKey: token) }
    }

    /// The largest and the summed distance, in events, between `last` and each stream's cursor.
    func lag(behind last: EventID) -> (max: UInt64, total: UInt64) {
        state.withLock { s in
            var maxLag: UInt64 = 0
            var total: UInt64 = 0
            for cursor in s.cursors.values {
                let lag = last > cursor ? last - cursor : 0
                maxLag = Swift.max(maxLag, lag)
                total += lag
            }
            return (maxLag, total)
        }
    }
}
