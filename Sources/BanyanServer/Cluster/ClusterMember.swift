import EventLog
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// This node's membership of a cluster in etcd (docs/REPLICATION.md, "Cluster mode"): the key
/// `/banyan/<cluster>/members/<advertised URL>` holds what the node is (`{"url", "role",
/// "epoch", "last_id", "updated_unix_ms"}`), bound to the node's lease. The lease is renewed every
/// ttl/3 and the value rewritten every second; a clean stop revokes the lease (the key goes at
/// once), a crash lets it expire (the key goes after the ttl). Election builds on this lease.
public final class ClusterMember: Service, Sendable {
    public let etcd: EtcdClient
    public let cluster: String
    public let url: String
    /// Seconds a lease outlives its last renewal (`--lease-ttl-seconds`).
    public let ttlSeconds: Int
    let store: EventStore
    let replication: ReplicationState
    let logger: Logger

    private struct State {
        var lease: Int64 = 0
        /// When the latest renewal etcd confirmed was sent.
        var renewed: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    /// How often the member's value is rewritten.
    static let publishInterval: Duration = .seconds(1)

    public init(etcd: EtcdClient, cluster: String, url: String, ttlSeconds: Int, store: EventStore, replication: ReplicationState, logger: Logger) {
        self.etcd = etcd
        self.cluster = cluster
        self.url = url
        self.ttlSeconds = ttlSeconds
        self.store = store
        self.replication = replication
        self.logger = logger
    }

    /// A cluster name: 1-64 of letters, digits, `.`, `_`, `-` (it is a part of etcd keys).
    public static func validName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || "._-".utf8.contains($0) }
    }

    public static func prefix(_ cluster: String) -> String { "/banyan/\(cluster)/" }
    public static func membersPrefix(_ cluster: String) -> String { prefix(cluster) + "members/" }
    var key: String { Self.membersPrefix(cluster) + url }

    /// Takes a lease and creates this node's key, before the node serves. Another live node
    /// advertising the same URL holds the key: this waits up to two ttls for its lease to end
    /// (the node's own earlier process, killed, lets go within one), then fails.
    public func join() async throws {
        let (lease, granted) = try await etcd.grant(ttlSeconds: ttlSeconds)
        let sent = ContinuousClock.now
        let deadline = sent + .seconds(2 * granted)
        while true {
            guard let holder = try await etcd.create(key, value: value(), lease: lease) else { break }
            guard ContinuousClock.now < deadline else {
                try? await etcd.revoke(lease)
                throw EtcdClient.EtcdError(
                    description: "another node of cluster \(cluster) advertises \(url) (its lease \(holder.lease) is alive); give each node its own --advertise URL")
            }
            logger.notice("cluster: \(url) is still held by an earlier lease; waiting for it to end", metadata: ["lease": "\(holder.lease)"])
            try await Task.sleep(for: .seconds(1))
        }
        state.withLock { s in
            s.lease = lease
            s.renewed = sent
        }
        logger.info("cluster: joined", metadata: ["cluster": "\(cluster)", "url": "\(url)", "lease": "\(lease)", "ttl_s": "\(granted)"])
    }

    /// Renews the lease and publishes the node's state until the server stops, then revokes the
    /// lease. A lease found expired (etcd out of reach for a ttl, this process paused) is taken
    /// again, with the key.
    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            var lastRenewal = ContinuousClock.now
            while !Task.isCancelled {
                do {
                    if ContinuousClock.now - lastRenewal >= .seconds(ttlSeconds) / 3 {
                        lastRenewal = .now
                        try await renew()
                    }
                    try await etcd.put(key, value: value(), lease: state.withLock { $0.lease })
                } catch is CancellationError {
                    break
                } catch {
                    logger.warning("cluster: \(error)")
                }
                try? await Task.sleep(for: Self.publishInterval)
            }
        }
        let lease = state.withLock { $0.lease }
        if lease != 0 { try? await etcd.revoke(lease) }
    }

    private func renew() async throws {
        let sent = ContinuousClock.now
        let lease = state.withLock { $0.lease }
        if try await etcd.keepAlive(lease) > 0 {
            state.withLock { $0.renewed = sent }
            return
        }
        logger.warning("cluster: the lease expired; joining again", metadata: ["lease": "\(lease)"])
        try await join()
    }

    func value() -> [UInt8] {
        let members: [JSONMember] = [
            JSONMember(key: "url", value: .string(url)), JSONMember(key: "role", value: .string(replication.role.rawValue)),
            JSONMember(key: "epoch", value: .int(store.epoch)), JSONMember(key: "last_id", value: .int(store.lastID)),
            JSONMember(key: "updated_unix_ms", value: .int(Int64(Date().timeIntervalSince1970 * 1000))),
        ]
        return JSONValue.object(members).serialized()
    }

    /// `/v1/status`'s `cluster`.
    var status: JSONValue {
        let (lease, renewed) = state.withLock { ($0.lease, $0.renewed) }
        return .members([
            "name": .string(cluster), "url": .string(url), "etcd": .array(etcd.endpoints.map(JSONValue.string)),
            "lease": .string(String(lease)), "lease_ttl_seconds": .int(ttlSeconds),
            "last_renewal_seconds": renewed.map { NativeAPI.seconds(.now - $0) } ?? .null,
        ])
    }
}
