import Foundation
import NIOPosix

/// Runs blocking store work off the cooperative executor that serves every connection.
///
/// Two pools, so that heavy work (traversals, trees) cannot starve point reads and SSE pages:
/// `run` uses NIO's shared pool, `runHeavy` a pool of its own whose size bounds how many heavy
/// requests run at once (others queue).
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    /// Work that may take minutes (a snapshot): a thread of its own, so that neither pool is
    /// held for its length.
    static func runLong<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try body() })
            }
        }
    }

    static func runHeavy<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await heavyPool.runIfActive(body)
    }

    /// Heavy requests that may run at once; more wait for a thread.
    static let heavyThreads = 2

    private static let heavyPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: heavyThreads)
        pool.start()
        return pool
    }()
}
