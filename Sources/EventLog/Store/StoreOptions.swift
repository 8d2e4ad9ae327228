#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a store is opened.
public struct StoreOptions: Sendable {
    public var limits = Limits()
    public var durability: Durability = .group
    /// Background WAL sync period under `.interval`.
    public var syncInterval: Duration = .milliseconds(100)
    /// Shared LRU block cache of all column families.
    public var blockCacheBytes = 64 << 20
    /// Table files RocksDB keeps open (its `max_open_files`); more are opened and closed as
    /// needed. Bounded so the server can tell how many descriptors connections may have.
    public var storeFilesMax = 1_024
    /// Opens without taking the lock, for `verify`, `export`, `get` and `status` beside a running
    /// server. Sees the store as of opening; appends fail.
    public var readOnly = false
    /// A leader appends through its sequencer; a follower only applies the groups its leader ships.
    public var role: StoreRole = .leader
    /// What to do about a damaged write-ahead log (`--accept-wal-loss`).
    public var walDamage: WALDamagePolicy = .refuse
    /// Writes the CelestialTree genesis event into a new, empty store.
    public var createGenesis = true
    /// Told about every commit group (metrics).
    public var observer: (any StoreObserver)?
    /// Wall clock in Unix nanoseconds, injected so tests can control stamped times.
    public var clock: @Sendable () -> Int64 = StoreOptions.wallClockNanos

    /// Fault injection for tests: called with the last id of each commit group before it is
    /// written; an error returned fails that write as RocksDB would.
    var failWrite: (@Sendable (_ groupLastID: EventID) -> StorageError?)?
    /// Told about every commit group applied (tests).
    var onApplied: (@Sendable (CommitGroup) -> Void)?
    /// Fault injection for tests: called before each background WAL sync; an error fails it.
    var failSync: (@Sendable () -> StorageError?)?

    public init() {}

    public static let wallClockNanos: @Sendable () -> Int64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

