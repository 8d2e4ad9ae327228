import BanyanClient
import EventLog
import Synchronization

/// What this node knows of replication (docs/REPLICATION.md): its role (the store's), its
/// leader, how far each follower has got (from the reports followers send with every pull) and
/// the writes waiting for replicas (`replicas=N`). Thread-safe behind one `Mutex`.
public final class ReplicationState: Sendable {
    public enum Role: String, Sendable {
        case leader, follower, fenced
    }

    /// One follower, as its last pull reported it.
    public struct FollowerProgress: Sendable {
        public var url: String
        public var appliedID: EventID
        public var durableID: EventID
        public var epoch: UInt64
        public var lastContact: ContinuousClock.Instant
        /// When its applied id last reached the leader's last id.
        public var caughtUpAt: ContinuousClock.Instant
    }

    private struct State {
        var leader: String?
        var advertise: String
        var followers: [String: FollowerProgress] = [:]
        /// On a follower: the leader's last id and epoch as of the last pull, when the follower
        /// was last caught up, and when it last heard from the leader.
        var leaderLastID: EventID = 0
        var leaderEpoch: UInt64 = 0
        var caughtUpAt: ContinuousClock.Instant = .now
        var lastContact: ContinuousClock.Instant?
    }

    let store: EventStore
    /// Writes waiting for replicas wait on this state (`waitForReplicas`).
    private let state: WaitableState<State>
    let counters = Counters()

    /// Followers tracked at once: the `Banyan-Follower` header is the client's to choose, so the
    /// table needs a bound; past it the follower heard from the longest ago is forgotten.
    static let followersMax = 64

    /// - Parameters:
    ///   - leader: the leader's URL on a follower (`--follow`); a leader is its own.
    ///   - advertise: the URL others should use for this node (`--advertise`).
    public init(store: EventStore, leader: String?, advertise: String) {
        self.store = store
        state = WaitableState(State(leader: store.role == .leader ? advertise : leader, advertise: advertise))
    }

    /// The store's role: the one source of truth.
    public var role: Role {
        switch store.role {
        case .leader?: .leader
        case .fenced?: .fenced
        case .follower?, nil: .follower
        }
    }

    /// The leader's URL, when known (a fenced node does not know its successor's).
    public var leader: String? { state.withState { $0.leader } }
    public var advertise: String { state.withState { $0.advertise } }

    /// Sets the advertised URL once the port is known (`--port 0`).
    func setAdvertise(_ url: String) {
        state.withState { s in
            if s.leader == s.advertise { s.leader = url }
            s.advertise = url
        }
    }

    /// In cluster mode: whether this node's lease was confirmed recently enough for it to
    /// acknowledge writes as the leader (`ClusterMember`); nil outside cluster mode.
    let leaseGate = Mutex<(@Sendable () -> Bool)?>(nil)

    /// Set while this leader hands its leadership to the node at that URL (cluster mode): writes
    /// are refused before they are stored (`requireLeader`).
    let handingOver = Mutex<String?>(nil)

    /// Waits until the follower at `url` holds every id up to `through` durably, at most
    /// `timeout`; returns whether it does.
    func waitForFollower(_ url: String, through: EventID, timeout: Duration) async -> Bool {
        let store = self.store
        let state = await state.wait(timeout: timeout) { s in (s.followers[url]?.durableID ?? 0) >= through || store.role != .leader }
        return (state.followers[url]?.durableID ?? 0) >= through
    }

    /// The leader to follow and to redirect writes to (cluster mode: read from etcd).
    func follow(leader: String?) {
        state.withState { $0.leader = leader }
    }

    /// This leader stepped down (cluster mode: its lease was not confirmed in time). Writes
    /// waiting for replicas are woken to find out.
    func steppedDown() {
        counters.fencings.add(1, ordering: .relaxed)
        state.withState { $0.leader = nil }
        state.wakeAll()
    }

    /// Refuses to acknowledge a write a leader stored when its lease is no longer confirmed, or
    /// it no longer leads the term (`epoch`) the write was stored in (cluster mode): `503`,
    /// naming what was stored, which may be lost.
    func confirmLease(term epoch: UInt64, stored: @autoclosure () -> [(name: String, value: JSONValue)]) throws {
        guard let gate = leaseGate.withLock({ $0 }),
            !gate() || role != .leader || store.epoch != epoch || handingOver.withLock({ $0 }) != nil
        else { return }
        var error = APIError(
            .serviceUnavailable, "not the leader",
            detail: "the events are stored on this node, but its leadership lease was not confirmed in time, so they are not acknowledged; they may be lost")
        error.headers[.retryAfter] = "1"
        error.members = stored()
        throw error
    }

    /// This node now leads (after `promote`).
    func becameLeader() {
        state.withState { s in
            s.leader = s.advertise
            s.followers = [:]
        }
        counters.promotions.add(1, ordering: .relaxed)
    }

    /// Fences the store when `epoch` is newer than the one it leads in; returns whether it did.
    /// Writes waiting for replicas are woken to find out.
    @discardableResult
    func observe(epoch: UInt64) -> Bool {
        guard store.role == .leader, epoch > store.epoch, store.fence(by: epoch) else { return false }
        counters.fencings.add(1, ordering: .relaxed)
        state.withState { $0.leader = nil }
        state.wakeAll()
        return true
    }

    // MARK: leader

    /// A leader records a follower's report, and wakes writes it satisfies.
    func record(_ report: Replication.Report, leaderLastID: EventID) {
        let now = ContinuousClock.now
        state.update { s in
            var progress = s.followers[report.follower] ?? FollowerProgress(
                url: report.follower, appliedID: 0, durableID: 0, epoch: report.epoch, lastContact: now, caughtUpAt: now)
            progress.appliedID = report.appliedID
            progress.durableID = report.durableID
            progress.epoch = report.epoch
            progress.lastContact = now
            if report.appliedID >= leaderLastID { progress.caughtUpAt = now }
            s.followers[report.follower] = progress
            if s.followers.count > Self.followersMax, let stalest = s.followers.values.min(by: { $0.lastContact < $1.lastContact }) {
                s.followers.removeValue(forKey: stalest.url)
            }
        }
    }

    /// Why a leader will not serve a pull (the route answers 409 with the reason).
    enum PullRefusal: Error {
        /// This node is not the leader; the detail says what it is.
        case notLeader(String)
        /// The follower is in a newer epoch than this node (which the request has fenced).
        case staleEpoch(follower: UInt64, leader: UInt64)
        /// The follower asks after an id past this log's end.
        case ahead(after: EventID, lastID: EventID)
        /// The follower's position is not a group boundary here: the logs diverge.
        case notBoundary(String)
        /// The follower reconciled against another epoch of this node (or another node).
        case leaderEpochMismatch(follower: UInt64, leader: UInt64)
    }

    /// A leader's first look at a pull: refuses it unless this node leads, and the follower is
    /// neither in a newer epoch nor past the end of the log; records the follower's report.
    /// The HTTP route and the simulator (`ReplicationSimulationTests`) both go through here.
    func acceptPull(after: EventID, report: Replication.Report?) throws(PullRefusal) {
        try requireLeading()
        if let report {
            guard report.epoch <= store.epoch else { throw .staleEpoch(follower: report.epoch, leader: store.epoch) }
            // Without this, a follower that reconciled against this node in an earlier term
            // (before it was fenced, truncated and promoted again) would report ids of a log
            // that differs from this one, and they would count as replicas.
            guard report.leaderEpoch == store.epoch else { throw .leaderEpochMismatch(follower: report.leaderEpoch, leader: store.epoch) }
            record(report, leaderLastID: store.lastID)
        }
        guard after <= store.lastID else { throw .ahead(after: after, lastID: store.lastID) }
    }

    /// Refuses a replication request unless this node leads.
    func requireLeading() throws(PullRefusal) {
        switch role {
        case .leader: return
        case .follower: throw .notLeader("this node follows \(leader ?? "no known leader"); replicate from the leader")
        case .fenced: throw .notLeader("this node's term was superseded (it is fenced); replicate from the new leader")
        }
    }

    /// Where epoch `epoch` ends in this log, and how it began (`GET /v1/replication/epoch`).
    func epochAnswer(for epoch: UInt64) throws -> Replication.EpochAnswer {
        let lastID = store.lastID
        let leaderEpoch = store.epoch
        let end = store.epochEnd(for: epoch)
        let start = end.epoch == 0 ? nil : try store.epochStart(end.epoch)
        return Replication.EpochAnswer(
            epoch: end.epoch, endID: end.endID, startID: start?.firstID, startCRC: start?.crc, leaderEpoch: leaderEpoch, lastID: lastID)
    }

    /// The encoded commit groups after `after`, up to `bytesMax` (blocking: reads storage).
    func shippableGroups(after: EventID, bytesMax: Int) throws -> [[UInt8]] {
        do {
            return try store.shippableGroups(after: after, bytesMax: bytesMax)
        } catch let error where error.cause?.code == .invalidArgument {
            throw PullRefusal.notBoundary(error.message)
        }
    }

    public var followers: [FollowerProgress] { state.withState { Array($0.followers.values).sorted { $0.url < $1.url } } }

    /// The highest id a follower holds durably, as far as this leader knows, and never below
    /// what the store inherited (`EventStore.confirmedID`): sent with every pull, so followers
    /// know what a promotion must not lose.
    var confirmedWatermark: EventID {
        let reported = state.withState { $0.followers.values.map(\.durableID).max() ?? 0 }
        return max(reported, store.confirmedID)
    }

    /// Followers holding `id` durably.
    func confirmed(through id: EventID) -> Int {
        state.withState { Self.confirmed($0.followers, id) }
    }

    private static func confirmed(_ followers: [String: FollowerProgress], _ id: EventID) -> Int {
        followers.values.reduce(0) { $0 + ($1.durableID >= id ? 1 : 0) }
    }

    /// Waits until `count` followers hold `id` durably, the timeout passes, or the node is
    /// fenced; returns how many hold it then.
    func waitForReplicas(_ count: Int, through id: EventID, timeout: Duration) async -> Int {
        let store = self.store
        let state = await state.wait(timeout: timeout) { s in Self.confirmed(s.followers, id) >= count || store.role != .leader }
        return Self.confirmed(state.followers, id)
    }

    // MARK: follower

    /// A follower records what its last pull said of the leader.
    func pulled(leaderLastID: EventID, leaderEpoch: UInt64, appliedID: EventID) {
        let now = ContinuousClock.now
        state.withState { s in
            s.leaderLastID = leaderLastID
            s.leaderEpoch = leaderEpoch
            s.lastContact = now
            if appliedID >= s.leaderLastID { s.caughtUpAt = now }
        }
    }

    /// On a follower: the leader's last id and epoch as last seen, when the follower was last
    /// caught up, and when it last heard from the leader.
    var followerView: (leaderLastID: EventID, leaderEpoch: UInt64, caughtUpAt: ContinuousClock.Instant, lastContact: ContinuousClock.Instant?) {
        state.withState { ($0.leaderLastID, $0.leaderEpoch, $0.caughtUpAt, $0.lastContact) }
    }

    /// Totals for `/metrics`.
    final class Counters: Sendable {
        let groupsShipped = Atomic<Int>(0)
        let bytesShipped = Atomic<Int>(0)
        let groupsApplied = Atomic<Int>(0)
        let bytesApplied = Atomic<Int>(0)
        let truncatedEvents = Atomic<Int>(0)
        let promotions = Atomic<Int>(0)
        let fencings = Atomic<Int>(0)
    }
}

extension ReplicationState {
    /// The replication fields of `/v1/status`: on a leader, each follower's progress; on a
    /// follower, how far behind its leader it is.
    func statusMembers(lastID: EventID) -> [JSONMember] {
        let now = ContinuousClock.now
        switch role {
        case .leader:
            let list = followers.map { f -> JSONValue in
                .members([
                    "url": .string(f.url), "applied_id": .int(f.appliedID), "durable_id": .int(f.durableID),
                    "lag_ids": .int(lastID > f.appliedID ? lastID - f.appliedID : 0),
                    "lag_seconds": NativeAPI.seconds(f.appliedID >= lastID ? .zero : now - f.caughtUpAt),
                    "last_contact_seconds": NativeAPI.seconds(now - f.lastContact), "epoch": .int(f.epoch),
                ])
            }
            return [JSONMember(key: "confirmed_id", value: .int(confirmedWatermark)), JSONMember(key: "followers", value: .array(list))]
        case .follower, .fenced:
            let view = followerView
            let behind = view.leaderLastID > lastID
            return [
                JSONMember(key: "applied_id", value: .int(lastID)),
                JSONMember(key: "durable_id", value: .int(store.durableID)),
                JSONMember(key: "confirmed_id", value: .int(store.confirmedID)),
                JSONMember(key: "lag_ids", value: .int(behind ? view.leaderLastID - lastID : 0)),
                JSONMember(key: "lag_seconds", value: NativeAPI.seconds(behind ? now - view.caughtUpAt : .zero)),
                JSONMember(key: "last_contact_seconds", value: view.lastContact.map { NativeAPI.seconds(now - $0) } ?? .null),
            ]
        }
    }
}
