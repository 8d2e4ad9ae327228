import Synchronization

/// Open SSE streams, bounded by `ServerConfiguration.streamsMax`.
public final class SubscriberCount: Sendable {
    private let count = Mutex(0)

    public init() {}

    public var current: Int { count.withLock { $0 } }

    /// Takes a slot; false when `max` are open.
    func acquire(max: Int) -> Bool {
        count.withLock { n in
            guard n < max else { return false }
            n += 1
            return true
        }
    }

    func release() {
        count.withLock { $0 -= 1 }
    }
}
