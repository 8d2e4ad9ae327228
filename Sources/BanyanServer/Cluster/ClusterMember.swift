import BanyanClient
import EventLog
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// This node in a cluster held in etcd (docs/REPLICATION.md, "Cluster mode").
///
/// Membership: the key `/banyan/<cluster>/members/<advertised URL>` holds what the node is
/// (`{"url", "role", "epoch", "last_id", "updated_unix_ms"}`), bound to the node's lease,
/// renewed every ttl/3 and rewritten every second; a clean stop revokes the lease (the key goes
/// at once), a crash lets it expire (after the ttl).
///
/// Election: the leader is whoever created `/banyan/<cluster>/leader` (etcd's compare-and-set on
/// creation), bound to its lease. With no leader key, the most advanced live member (highest
/// epoch, then last id) campaigns; the winner is promoted (a new epoch, as `banyan promote`) and
/// the others follow it. A leader whose renewal etcd has not confirmed for half a ttl steps down
/// and acknowledges no write from then on (its lease, and so its key, may expire at a ttl), so
/// two nodes never acknowledge writes as leader in overlapping time.
public final class ClusterMember: Service, Sendable {
    public let etcd: EtcdClient
    public let cluster: String
    public let url: String
    /// Seconds a lease outlives its last renewal (`--lease-ttl-seconds`).
    public let ttlSeconds: Int
    let store: EventStore
    let replication: ReplicationState
    let logger: Logger

    /// A write-role token for pulling from the leader (`BANYAN_LEADER_TOKEN`).
    let token: String?

    private struct State {
        var lease: Int64 = 0
        /// When the latest renewal etcd confirmed was sent.
        var renewed: ContinuousClock.Instant?
        /// The leader this node pulls from, and the task that does.
        var following: (url: String, task: Task<Void, Never>)?
        /// The etcd revision at which this node won its term.
        var wonAt: Int64?
        /// The etcd revision at which the leader key was first seen missing: members must have
        /// published after it before anyone campaigns (`mostAdvanced`).
        var missingSince: Int64?
        /// No campaign before this (after a win this node could not lead with).
        var quietUntil: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    /// How often the member's value is rewritten.
    static let publishInterval: Duration = .seconds(1)
    /// How often the leader key is read (how soon a follower notices a new leader, and a node
    /// campaigns once the leader's key has gone).
    static let electionInterval: Duration = .milliseconds(250)

    public init(
        etcd: EtcdClient, cluster: String, url: String, ttlSeconds: Int, store: EventStore, replication: ReplicationState, token: String? = nil, logger: Logger
    ) {
        self.etcd = etcd
        self.cluster = cluster
        self.url = url
        self.ttlSeconds = ttlSeconds
        self.store = store
        self.replication = replication
        self.token = token
        self.logger = logger
        // From the start (before serving): this node may be asked to promote, and a leader's
        // acknowledgements always go through the lease.
        replication.leaseGate.withLock { $0 = { [self] in leaseHeld } }
    }

    /// A cluster name: 1-64 of letters, digits, `.`, `_`, `-` (it is a part of etcd keys).
    public static func validName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || "._-".utf8.contains($0) }
    }

    public static func prefix(_ cluster: String) -> String { "/banyan/\(cluster)/" }
    public static func membersPrefix(_ cluster: String) -> String { prefix(cluster) + "members/" }
    var key: String { Self.membersPrefix(cluster) + url }
    public static func leaderKey(_ cluster: String) -> String { prefix(cluster) + "leader" }
    public static func handoverKey(_ cluster: String) -> String { prefix(cluster) + "handover" }

    /// What the leader key names: the leader's URL, and its epoch once it has been promoted
    /// (the campaign writes the URL alone, `lead` adds the epoch).
    public static func leader(in value: [UInt8]) -> (url: String, epoch: UInt64?)? {
        guard let record = try? JSONParser.parse(value), let url = record["url"]?.stringValue else { return nil }
        return (url, record["epoch"]?.uint64Value)
    }

    public enum HandoverError: Error, CustomStringConvertible {
        case notLeader, inProgress, unknownTarget(String), behind(String, Duration), notTaken(String)
        public var description: String {
            switch self {
            case .notLeader: "this node is not the cluster's leader"
            case .inProgress: "a handover is already under way"
            case .unknownTarget(let url): "\(url) is not a live member of the cluster (banyan cluster status lists them)"
            case .behind(let url, let waited): "\(url) did not hold every event durably within \(waited); this node leads on"
            case .notTaken(let url): "\(url) did not take the leadership in time; the cluster elects as usual"
            }
        }
    }

    /// How long a handover waits for its target to catch up, then to lead.
    public static let handoverWaitMax: Duration = .seconds(30)

    /// Hands the leadership to the member at `target` (`banyan cluster handover`): no write is
    /// taken from now on; once the target holds every event durably, this node names it in the
    /// handover key (so no other node campaigns), steps down and lets the leader key go; the
    /// target campaigns and is promoted. Nothing acknowledged is lost, whatever `--min-replicas`.
    /// Returns the target's epoch.
    public func handOver(to target: String) async throws -> UInt64 {
        guard replication.role == .leader else { throw HandoverError.notLeader }
        let lease = state.withLock { $0.lease }
        guard target != url else { throw HandoverError.unknownTarget(target) }
        guard try await etcd.get(Self.membersPrefix(cluster) + target) != nil else { throw HandoverError.unknownTarget(target) }
        // One at a time: writes stay refused (`requireLeader`) and unacknowledged
        // (`confirmLease`) until this one ends, so none is acknowledged that the target may lack.
        guard replication.handingOver.withLock({ current in
            guard current == nil else { return false }
            current = target
            return true
        }) else { throw HandoverError.inProgress }
        defer { replication.handingOver.withLock { $0 = nil } }
        guard await replication.waitForFollower(target, through: store.lastID, timeout: Self.handoverWaitMax) else {
            throw replication.role == .leader ? HandoverError.behind(target, Self.handoverWaitMax) : HandoverError.notLeader
        }
        guard replication.role == .leader, leaseHeld else { throw HandoverError.notLeader }
        // The handover key has a lease of its own, revoked at the end: it never outlives the
        // handover by more than that lease, whatever happens to this node.
        let (keyLease, _) = try await etcd.grant(ttlSeconds: Int(Self.handoverWaitMax.components.seconds) + ttlSeconds)
        defer { Task { [etcd] in try? await etcd.revoke(keyLease) } }
        try await etcd.put(Self.handoverKey(cluster), value: JSONValue.members(["to": .string(target)]).serialized(), lease: keyLease)
        stepDown()
        // Only while the key is still this node's (bound to its lease).
        _ = try await etcd.delete(Self.leaderKey(cluster), ifLease: lease)
        logger.notice("cluster: handing the leadership to \(target)")
        let deadline = ContinuousClock.now + Self.handoverWaitMax
        while ContinuousClock.now < deadline {
            if let held = try await etcd.get(Self.leaderKey(cluster)), let leader = Self.leader(in: held.value),
                leader.url == target, let epoch = leader.epoch
            {
                return epoch
            }
            try await Task.sleep(for: Self.electionInterval)
        }
        throw HandoverError.notTaken(target)
    }

    /// Whether the latest confirmed renewal was sent less than half a ttl ago: a leader
    /// acknowledges writes only then (its lease cannot have expired in anyone's eyes).
    var leaseHeld: Bool {
        guard let renewed = state.withLock({ $0.renewed }) else { return false }
        return ContinuousClock.now - renewed < .seconds(ttlSeconds) / 2
    }

    /// Takes a lease and creates this node's key, before the node serves. Another live node
    /// advertising the same URL holds the key: this waits up to two ttls for its lease to end
    /// (the node's own earlier process, killed, lets go within one), then fails.
    public func join() async throws {
        // Before the call: etcd starts the ttl when it takes the request.
        var sent = ContinuousClock.now
        let (lease, granted) = try await etcd.grant(ttlSeconds: ttlSeconds)
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
            // Keep the new lease alive meanwhile.
            let renewing = ContinuousClock.now
            if try await etcd.keepAlive(lease) > 0 { sent = renewing }
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
            var lastPublish = ContinuousClock.now - Self.publishInterval
            var failing = false
            while !Task.isCancelled {
                // Checked first, whatever etcd answers: a leader that cannot confirm its lease
                // in time stops leading.
                if replication.role == .leader, !leaseHeld {
                    logger.warning("cluster: the lease was not confirmed for half its ttl; stepping down")
                    stepDown()
                }
                do {
                    if ContinuousClock.now - lastRenewal >= .seconds(ttlSeconds) / 3 {
                        lastRenewal = .now
                        try await renew()
                    }
                    if ContinuousClock.now - lastPublish >= Self.publishInterval {
                        lastPublish = .now
                        try await etcd.put(key, value: value(), lease: state.withLock { $0.lease })
                    }
                    try await elect()
                    if failing { logger.notice("cluster: etcd answers again") }
                    failing = false
                } catch is CancellationError {
                    break
                } catch {
                    if !failing { logger.warning("cluster: \(error)") }
                    failing = true
                }
                try? await Task.sleep(for: Self.electionInterval)
            }
        }
        await stopFollowing()
        // Stopping: no write is acknowledged once the lease (and the leader key) is given up.
        stepDown()
        let lease = state.withLock { $0.lease }
        if lease != 0 { try? await etcd.revoke(lease) }
    }

    /// One look at the leader key: follow the leader it names, or campaign when there is none.
    func elect() async throws {
        // A handover in progress decides for this node (`handOver`): between its step-down and
        // its delete of the leader key, this loop would otherwise lead again under that key.
        if replication.handingOver.withLock({ $0 }) != nil { return }
        let lease = state.withLock { $0.lease }
        let (found, revision) = try await etcd.lookUp(Self.leaderKey(cluster))
        if let held = found {
            state.withLock { $0.missingSince = nil }
            let leader = Self.leader(in: held.value)?.url ?? ""
            if leader == url, held.lease == lease {
                // Only with a fresh renewal: a leader without one would step down at once (after
                // etcd was out of reach, the key may still be this node's).
                if replication.role != .leader, leaseHeld { try await lead(revision: held.createRevision) }
                return
            }
            // This node leads, but the key is another's (or its own earlier lease's): it lost it.
            if replication.role == .leader {
                logger.warning("cluster: the leader key is no longer this node's; stepping down")
                stepDown()
            }
            // An earlier process of this node (same URL) may still hold it under its old lease:
            // wait for that to expire rather than follow itself.
            if leader == url { return }
            if replication.role == .fenced { store.rejoin() }
            await startFollowing(leader)
            return
        }
        if replication.role == .leader {
            logger.warning("cluster: the leader key is gone; stepping down")
            stepDown()
        }
        let since = state.withLock { s -> Int64 in
            let since = s.missingSince ?? revision
            s.missingSince = since
            return since
        }
        guard leaseHeld, state.withLock({ $0.quietUntil.map { ContinuousClock.now >= $0 } ?? true }) else { return }
        // A handover in progress names the one node that may campaign (`handOver`).
        if let handover = try await etcd.get(Self.handoverKey(cluster)) {
            guard (try? JSONParser.parse(handover.value))?["to"]?.stringValue == url else { return }
        } else if try await !mostAdvanced(publishedAfter: since) {
            return
        }
        let value = JSONValue.members(["url": .string(url), "lease": .string(String(lease))]).serialized()
        guard try await etcd.create(Self.leaderKey(cluster), value: value, lease: lease) == nil else { return }
        guard let won = try await etcd.get(Self.leaderKey(cluster)), won.lease == lease else { return }
        try await lead(revision: won.createRevision)
    }

    /// No live member is ahead of this one (by epoch, then last id, as they published after the
    /// leader key went: a member that has not published since is waited for).
    private func mostAdvanced(publishedAfter revision: Int64) async throws -> Bool {
        let mine = (store.epoch, store.lastID)
        for kv in try await etcd.range(prefix: Self.membersPrefix(cluster)) where kv.key != key {
            guard let other = try? JSONParser.parse(kv.value) else { continue }
            guard kv.modRevision > revision else { return false }
            let theirs = (other["epoch"]?.uint64Value ?? 0, other["last_id"]?.uint64Value ?? 0)
            if theirs > mine { return false }
        }
        return true
    }

    /// This node won the leader key: it stops pulling and is promoted to a new epoch above every
    /// one it knows of. When it cannot be (it lacks writes a replica confirmed), it lets the key
    /// go so a node that has them can win.
    private func lead(revision: Int64) async throws {
        await stopFollowing()
        if replication.role == .fenced { store.rejoin() }
        let epoch: UInt64
        let lease = state.withLock { $0.lease }
        do {
            epoch = try await store.promote(leader: url, epochAtLeast: replication.followerView.leaderEpoch)
        } catch {
            // The key goes with this node's lease (never another's): revoke it, join again under
            // a new one, and stay out of campaigns for a ttl so a node that has the writes wins.
            logger.error("cluster: won the election but cannot lead: \(error); letting the leader key go")
            state.withLock { s in
                s.renewed = nil
                s.quietUntil = .now + .seconds(ttlSeconds)
            }
            try? await etcd.revoke(lease)
            try await join()
            throw error
        }
        replication.becameLeader()
        state.withLock { $0.wonAt = revision }
        let value = JSONValue.members([
            "url": .string(url), "lease": .string(String(lease)), "epoch": .int(epoch), "revision": .int(revision),
        ]).serialized()
        guard try await etcd.put(Self.leaderKey(cluster), value: value, ifLease: lease) else {
            logger.warning("cluster: the leader key was lost while promoting; stepping down")
            stepDown()
            return
        }
        logger.notice("cluster: elected leader", metadata: ["epoch": "\(epoch)", "revision": "\(revision)"])
    }

    private func stepDown() {
        if store.stepDown() { replication.steppedDown() }
        state.withLock { $0.wonAt = nil }
    }

    private func startFollowing(_ leader: String) async {
        if state.withLock({ $0.following?.url }) == leader { return }
        await stopFollowing()
        replication.follow(leader: leader)
        let follower = Follower(store: store, replication: replication, client: BanyanHTTPClient(baseURL: leader, token: token), logger: logger)
        let task = Task { _ = try? await follower.follow() }
        state.withLock { $0.following = (leader, task) }
        logger.notice("cluster: following \(leader)")
    }

    /// Stops pulling and waits until the pull in progress is done (a promotion must not race an
    /// apply).
    private func stopFollowing() async {
        guard let following = state.withLock({ s -> (url: String, task: Task<Void, Never>)? in
            defer { s.following = nil }
            return s.following
        }) else { return }
        following.task.cancel()
        await following.task.value
    }

    private func renew() async throws {
        let sent = ContinuousClock.now
        let lease = state.withLock { $0.lease }
        if try await etcd.keepAlive(lease) > 0 {
            state.withLock { $0.renewed = sent }
            return
        }
        // Expired: the leader key went with it, and another node may lead already. A new lease
        // must not let this node acknowledge as the leader of its old term.
        if replication.role == .leader {
            logger.warning("cluster: the lease expired; stepping down")
            stepDown()
        }
        state.withLock { $0.renewed = nil }
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
            "won_at_revision": state.withLock { $0.wonAt }.map { .string(String($0)) } ?? .null,
        ])
    }
}
