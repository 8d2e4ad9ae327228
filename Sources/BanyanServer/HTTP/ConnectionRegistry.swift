#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import Synchronization

/// The server's open connections, for the connection limit: how many there are, and which are
/// idle (no request in progress) and since when, so that a new connection at the limit can take
/// the place of the one idle the longest instead of waiting. Thread-safe behind one `Mutex`;
/// connections live on several event loops.
public final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: any Channel
        let mark: ConnectionMark
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var evicted = 0
        var timedOut: [String: Int] = [:]
    }

    private let state = Mutex(State())
    /// Connections open at once; the listener stops accepting at this count.
    public let connectionsMax: Int
    /// Set by the first connection told to quiesce (a graceful shutdown began).
    let quiescing = Atomic(false)

    public init(connectionsMax: Int) {
        precondition(connectionsMax >= 1)
        self.connectionsMax = connectionsMax
    }

    public var count: Int { state.withLock { $0.entries.count } }

    /// Connections closed to make room, and closed by each timeout, since start (for metrics).
    public var closedCounts: (evicted: Int, timedOut: [String: Int]) {
        state.withLock { ($0.evicted, $0.timedOut) }
    }

    func opened(_ channel: any Channel) {
        let mark = ConnectionMark()
        mark.set(idle: true)
        state.withLock { $0.entries[ObjectIdentifier(channel)] = Entry(channel: channel, mark: mark) }
    }

    func closed(_ channel: any Channel) {
        _ = state.withLock { $0.entries.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// The mark of an open connection, which its guard then sets without taking the lock.
    func mark(for channel: any Channel) -> ConnectionMark? {
        state.withLock { $0.entries[ObjectIdentifier(channel)]?.mark }
    }

    func timedOut(_ reason: String) {
        state.withLock { $0.timedOut[reason, default: 0] += 1 }
    }

    /// Closes the connection idle the longest; false when every connection is busy.
    func evictOldestIdle() -> Bool {
        let victim: (any Channel)? = state.withLock { s in
            var oldest: (entry: Entry, since: Int64)?
            for entry in s.entries.values {
                let since = entry.mark.since
                guard since != ConnectionMark.busy else { continue }
                if since < oldest?.since ?? .max { oldest = (entry, since) }
            }
            // Busy from now on, so it is not chosen twice while it closes; a request that
            // started meanwhile (the mark changed) keeps its connection.
            guard let oldest, oldest.entry.mark.claim(idleSince: oldest.since) else { return nil }
            s.evicted += 1
            return oldest.entry.channel
        }
        victim?.close(promise: nil)
        return victim != nil
    }

    /// Descriptors kept free of connections and RocksDB's table files.
    public static let descriptorReserve = 64
}

/// How the process's file descriptors are shared: RocksDB's table files get at most a quarter
/// (and at most what the store asks for), `ConnectionRegistry.descriptorReserve` stay free for
/// logs, the WAL, event loops and pipes, and connections may have the rest.
public struct DescriptorBudget: Sendable {
    /// The soft descriptor limit (`ulimit -n`), after raising it to the hard limit.
    public let descriptors: Int
    /// RocksDB's `max_open_files`.
    public let storeFiles: Int

    /// The most connections that fit; `--connections-max` may not exceed it.
    public var connectionsCeiling: Int { descriptors - storeFiles - ConnectionRegistry.descriptorReserve }

    /// The budget of this process. Raises the soft limit to the hard one first, as most servers do.
    public static func current(storeFilesMax: Int) -> DescriptorBudget {
        var limit = rlimit()
        var descriptors = 1_024
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            if limit.rlim_cur < limit.rlim_max {
                var raised = limit
                raised.rlim_cur = limit.rlim_max
                if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
            }
            descriptors = Int(clamping: limit.rlim_cur)
        }
        return DescriptorBudget(descriptors: descriptors, storeFiles: min(storeFilesMax, descriptors / 4))
    }
}

/// What others need to know of a connection without asking its event loop: whether it is idle
/// and since when (read by the listener when it picks a connection to close), and whether its
/// client has half-closed (read by an SSE stream). Atomics, no lock per request.
final class ConnectionMark: Sendable {
    /// CLOCK_MONOTONIC nanoseconds at which the connection became idle, or `busy`.
    private let value = Atomic<Int64>(ConnectionMark.busy)
    private let inputClosedFlag = Atomic(false)

    var inputClosed: Bool {
        get { inputClosedFlag.load(ordering: .relaxed) }
        set { inputClosedFlag.store(newValue, ordering: .relaxed) }
    }
    static let busy = Int64.max

    var since: Int64 { value.load(ordering: .relaxed) }

    func set(idle: Bool) {
        value.store(idle ? Self.monotonicNanoseconds() : Self.busy, ordering: .relaxed)
    }

    /// Marks the connection busy if it is still idle since `idleSince`.
    func claim(idleSince: Int64) -> Bool {
        value.compareExchange(expected: idleSince, desired: Self.busy, ordering: .relaxed).exchanged
    }

    private static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// On the listening socket: stops accepting at the connection limit (after closing the
/// connection idle the longest, so a new client gets in while idle ones wait), resumes when a
/// connection closes, and backs off when accept fails for want of descriptors or memory.
///
/// Why the back-off is needed: after a failed `accept` SwiftNIO keeps the listening socket
/// registered for readability while the pending connection waits in the backlog, so the event
/// loop is woken at once, fails again and spins (one core at 100%, `/healthz` unanswered).
/// Turning `autoRead` off unregisters the socket; it is turned on again after the back-off.
final class ListenerGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never
    private let registry: ConnectionRegistry
    private let logger: Logger
    private var readHeld = false
    private var backoff: TimeAmount = ListenerGuard.backoffMin
    private var context: ChannelHandlerContext?

    static let backoffMin: TimeAmount = .milliseconds(50)
    static let backoffMax: TimeAmount = .seconds(1)

    init(registry: ConnectionRegistry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // One accept per read, so the count is checked before every accept.
        try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: 1)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        registry.opened(child)
        backoff = Self.backoffMin
        let registry = self.registry
        let loop = NIOLoopBound(self, eventLoop: context.eventLoop)
        child.closeFuture.whenComplete { _ in
            registry.closed(child)
            loop.eventLoop.execute { loop.value.resumeIfRoom() }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        guard registry.count >= registry.connectionsMax else {
            context.read()
            return
        }
        readHeld = true
        _ = registry.evictOldestIdle()
    }

    /// After a connection closed: accept again if there is room; if not (a close that was not
    /// ours), make room by closing the next connection idle the longest.
    private func resumeIfRoom() {
        guard readHeld, let context else { return }
        guard registry.count < registry.connectionsMax else {
            _ = registry.evictOldestIdle()
            return
        }
        readHeld = false
        context.read()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        logger.warning("accept failed; pausing before accepting again", metadata: [
            "error": "\(error)", "pause_ms": "\(backoff.nanoseconds / 1_000_000)", "connections": "\(registry.count)",
        ])
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: backoff) {
            channel.setOption(.autoRead, value: true).whenFailure { _ in }
        }
        backoff = min(backoff * 2, Self.backoffMax)
    }
}
