import EventLog
import Foundation

// Shared by the test targets (EventLogTests, BanyanServerTests): temporary stores and seeded
// randomness. Only EventLog's public API, so this builds like any library target.

/// A store in its own temporary directory (tests run in parallel in one process, and RocksDB
/// allows one open per path).
public struct TempStore {
    public let path: String
    public let store: EventStore

    public static func make(
        _ name: String = #function, limits: Limits = Limits(), genesis: Bool = false, clock: (@Sendable () -> Int64)? = nil
    ) async throws -> TempStore {
        let path = try TempDir.make(name)
        var options = StoreOptions()
        options.limits = limits
        options.createGenesis = genesis
        options.durability = .never
        if let clock { options.clock = clock }
        return TempStore(path: path, store: try await EventStore.open(at: path, options: options))
    }

    public func reopen(limits: Limits = Limits(), readOnly: Bool = false) async throws -> EventStore {
        var options = StoreOptions()
        options.limits = limits
        options.readOnly = readOnly
        options.createGenesis = false
        return try await EventStore.open(at: path, options: options)
    }

    public func remove() {
        store.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Polls `done` until it holds, for at most `bound`: a test that waits on another thread's
/// progress fails instead of hanging when that progress never comes.
public func waitUntil(_ what: String, within bound: Duration = .seconds(30), _ done: () -> Bool) async throws {
    let deadline = ContinuousClock.now + bound
    while !done() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(1))
    }
}

public struct TimedOut: Error {
    public var what: String
}

public enum TempDir {
    public static func make(_ name: String) throws -> String {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let path = NSTemporaryDirectory() + "banyan-test-\(safe)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// SplitMix64: a tiny seeded generator so every randomised test can print and replay its seed.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seed from the environment (BANYAN_SEED) or the clock, printed so a failure can be replayed.
    public static func seed(_ test: String) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["BANYAN_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970 * 1000)
        print("\(test): seed \(seed) (set BANYAN_SEED=\(seed) to replay)")
        return seed
    }
}
