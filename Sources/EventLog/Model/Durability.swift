/// When the writer fsyncs the WAL.
public enum Durability: String, Sendable, CaseIterable {
    /// One fsync per commit group, before any event in it is acknowledged (the default).
    case group
    /// Writes are acknowledged after reaching the OS; a background sync runs every
    /// `StoreOptions.syncInterval`. A machine crash may lose the last interval; a process crash loses nothing.
    case interval
    /// Never fsync explicitly; RocksDB and the OS decide.
    case never
}
