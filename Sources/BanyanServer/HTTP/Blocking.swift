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

    /// Work that may take minutes (a snapshot, a compaction): a thread of its own, so that
    /// neither pool is held for its length, at a lower CPU priority (`maintenanceNice`), so that
    /// on a busy machine it yields to the appends and reads it runs beside.
    static func runLong<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                // Linux keeps a nice value per thread; PRIO_PROCESS with 0 sets the caller's own.
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, maintenanceNice)
                continuation.resume(with: Result { try body() })
            }
        }
    }

    /// The nice value of maintenance threads (0 normal, 19 lowest).
    static let maintenanceNice: Int32 = 10

    static func runHeavy<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await heavyPool.runIfActive(body)
    }

    /// `runHeavy` for a caller that is no task (the event loop's path, `FastTree`): `done` gets
    /// the result on the pool's thread, or a failure at once once the pool has stopped.
    static func submitHeavy<T: Sendable>(_ body: @escaping @Sendable () throws -> T, done: @escaping @Sendable (Result<T, any Error>) -> Void) {
        heavyPool.submit { state in
            guard case .active = state else { return done(.failure(NIOThreadPoolError.ThreadPoolInactive())) }
            done(Result { try body() })
        }
    }

    /// Heavy requests that may run at once; more wait for a thread.
    static let heavyThreads = 2

    private static let heavyPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: heavyThreads)
        pool.start()
        return pool
    }()
}
