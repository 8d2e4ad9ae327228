/// Told about every commit group, on the writer thread, after the group is durable per its
/// policy and before its appenders resume: keep it cheap. The server turns it into metrics;
/// EventLog itself stays free of any metrics library.
public protocol StoreObserver: Sendable {
    /// - Parameters:
    ///   - events: events stored by the group (duplicates excluded)
    ///   - batches: client batches acknowledged by the group, failed ones included
    ///   - synced: whether the write was fsynced
    ///   - writeDuration: time spent in RocksDB's write (and fsync)
    func didCommit(events: Int, batches: Int, synced: Bool, writeDuration: Duration)

    /// A background sync of the write-ahead log (`--fsync interval`) failed.
    func didFailSync(error: String)
}

extension StoreObserver {
    public func didFailSync(error: String) {}
}
