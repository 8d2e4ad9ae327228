import NIOPosix

/// Runs blocking store work (RocksDB reads, traversals, tree building) on NIO's thread pool so
/// it never occupies the cooperative executor that serves every connection.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
