import BanyanClient
import EventLog
import Logging
import ServiceLifecycle

/// A follower's side of log shipping (docs/REPLICATION.md). Before it applies anything from a
/// leader, and again whenever the leader's epoch changes or the leader says the follower's
/// position is not in its log, it finds where its log diverges from the leader's (Kafka's
/// leader-epoch rule, `EventStore.divergence`) and drops the tail the leader does not have.
/// Then it pulls the commit groups after its last applied id (a long poll when caught up),
/// applies them verbatim, makes them durable, and reports how far it has got with the next pull.
/// It retries with back-off when the leader cannot be reached, and stops once this node is
/// promoted.
struct Follower: Service {
    let store: EventStore
    let replication: ReplicationState
    let client: BanyanHTTPClient
    let logger: Logger
    /// The longest a pull waits for new groups when caught up.
    var waitMs = 1_000
    var bytesMax = 4 << 20

    static let backoffMin: Duration = .milliseconds(50)
    static let backoffMax: Duration = .seconds(2)

    /// Why a pull cannot go on: the leader is behind this follower's epoch, or another mismatch
    /// that retrying alone will not fix (logged, retried with back-off in case an operator
    /// fixes it).
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    func run() async throws {
        // A pull may be waiting on the leader for a second, or the back-off sleeping: shutting
        // down must not wait for either.
        try await cancelWhenGracefulShutdown { try await follow() }
        // Promoted: nothing more to pull, but a service that returns would stop the server.
        try? await gracefulShutdown()
    }

    func follow() async throws {
        var backoff = Self.backoffMin
        var failing = false
        /// The leader epoch the log was last reconciled against (nil: not yet).
        var reconciledAt: UInt64?
        /// While catching up: the next pull, already on its way while the last one is applied.
        var next: Task<Replication.Pull, any Error>?
        defer { next?.cancel() }
        /// While catching up: the fsync of the last pull, run while the next one is applied.
        var syncing: Task<Void, Never>?
        /// Waits for that fsync: before the next one, before reconciling (which may truncate),
        /// and before a pull that may wait on the leader for a whole poll (its report must carry
        /// the last sync).
        func synced() async {
            await syncing?.value
            syncing = nil
        }
        while !Task.isCancelled && replication.role == .follower {
            do {
                let epoch: UInt64
                if let reconciledAt {
                    epoch = reconciledAt
                } else {
                    await synced()
                    epoch = try await reconcile()
                    reconciledAt = epoch
                }
                let pull: Replication.Pull
                if let prefetched = next {
                    next = nil
                    pull = try await prefetched.value
                } else {
                    // A prefetched pull that came back empty lands here too.
                    await synced()
                    pull = try await self.pull(after: store.lastID, reconciledAt: epoch, waitMs: waitMs)
                }
                // A full pull means more is waiting: ask for it now, so the leader reads and
                // ships the next stretch while this one is applied (catch-up runs at the pace of
                // the slower side, not of both in turn). Its report is one pull old, so it does
                // not wait on the leader (wait_ms 0): a long poll carrying a stale report would
                // keep the leader from seeing this pull's progress, and writes waiting for
                // replicas with it, for a whole poll.
                if pull.bytes >= bytesMax / 2, let after = pull.groups.last.flatMap(CommitGroup.lastID(encoded:)) {
                    next = Task { try await self.pull(after: after, reconciledAt: epoch, waitMs: 0) }
                }
                if try await apply(pull, reconciledAt: epoch) == false {
                    reconciledAt = nil
                    next?.cancel()
                    next = nil
                } else if !pull.groups.isEmpty && store.options.durability != .never {
                    // One fsync at a time. While more is waiting, this pull's runs as the next is
                    // applied (a later report carries it). Caught up, it is synced before the
                    // next pull asks: that report is what writes waiting for replicas wait on.
                    await synced()
                    let store = self.store
                    if next != nil {
                        syncing = Task { _ = try? await Blocking.run { store.syncShipped() } }
                    } else {
                        _ = try await Blocking.run { store.syncShipped() }
                    }
                }
                if failing { logger.notice("replication: reached the leader again", metadata: ["leader": "\(client.baseURL)"]) }
                failing = false
                backoff = Self.backoffMin
            } catch is CancellationError {
                break
            } catch {
                next?.cancel()
                next = nil
                if Task.isCancelled { break }
                if let error = error as? BanyanClientError, error.status == 409 { reconciledAt = nil }
                if replication.role != .follower { break }
                if let error = error as? BanyanClientError, error.status == 410 {
                    // Behind the leader's pruned prefix: no retry can fix it, only a bootstrap.
                    if !failing {
                        logger.error("replication: this follower is behind the leader's pruned prefix; stop it, move its data directory aside and start it again to bootstrap from the leader's newest snapshot", metadata: [
                            "leader": "\(client.baseURL)", "last_id": "\(store.lastID)", "detail": "\(error.detail ?? "")",
                        ])
                    }
                    failing = true
                    backoff = Self.backoffMax
                    try? await Task.sleep(for: backoff)
                    continue
                }
                if !failing || backoff == Self.backoffMax {
                    logger.warning("replication: pull failed", metadata: ["leader": "\(client.baseURL)", "error": "\(error)"])
                }
                failing = true
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, Self.backoffMax)
            }
        }
        // Nothing of this loop's outlives it (a caller may promote this node or close its store next).
        await synced()
    }

    /// Drops the tail the leader does not have; returns the leader's epoch. Each round that
    /// finds a conflicting epoch drops that epoch, so the rounds are bounded by the history.
    private func reconcile() async throws -> UInt64 {
        for _ in 0...store.epochHistory.count {
            let answer = try await client.epochEnd(store.epoch)
            let store = self.store
            let leader = client.baseURL
            let step = try await Blocking.run { try Self.reconcile(store, answer: answer, leader: leader) }
            if step.dropped > 0 {
                replication.counters.truncatedEvents.add(step.dropped, ordering: .relaxed)
                logger.warning("replication: dropped a tail the leader does not have", metadata: [
                    "after": "\(store.lastID)", "events": "\(step.dropped)", "leader_epoch": "\(answer.leaderEpoch)",
                ])
            }
            if !step.again { return answer.leaderEpoch }
        }
        throw Refusal(description: "the log could not be reconciled with the leader at \(client.baseURL) within one round per epoch")
    }

    /// Pulls the groups after `after`, reporting how far this follower has got.
    private func pull(after: EventID, reconciledAt: UInt64, waitMs: Int) async throws -> Replication.Pull {
        let report = Replication.Report(
            follower: replication.advertise, appliedID: store.lastID, durableID: store.durableID, epoch: store.epoch, leaderEpoch: reconciledAt)
        return try await client.pullGroups(after: after, report: report, waitMs: waitMs, bytesMax: bytesMax)
    }

    /// Applies a pull; false when the leader's epoch is not the one the log was reconciled
    /// against (nothing was applied: reconcile again).
    private func apply(_ pull: Replication.Pull, reconciledAt: UInt64) async throws -> Bool {
        let store = self.store
        let groups = pull.groups
        let confirmed = pull.confirmedID
        guard
            let last = try await Blocking.run({
                try Self.apply(store, groups: groups, leaderEpoch: pull.leaderEpoch, reconciledAt: reconciledAt, confirmed: confirmed, sync: false)
            })
        else {
            return false
        }
        replication.counters.groupsApplied.add(groups.count, ordering: .relaxed)
        replication.counters.bytesApplied.add(pull.bytes, ordering: .relaxed)
        replication.pulled(leaderLastID: pull.leaderLastID, leaderEpoch: pull.leaderEpoch, appliedID: last)
        return true
    }
}

/// A follower's decisions, apart from the network: the `Follower` service and the simulator
/// (`ReplicationSimulationTests`) both make them here.
extension Follower {
    /// Given the leader's answer to "where does my latest epoch end in your log?", drops the
    /// tail of `store` the leader does not have, and returns how many events that was. Refuses
    /// a leader in an older epoch than the store: it is stale. Kafka's leader-epoch rule
    /// (`EventStore.divergence`, in rounds until the epoch asked about is one both have), plus a
    /// check that the epoch both name began the same way in both logs
    /// (`EventStore.conflictingEpoch`); when it did not, the epoch is dropped and `again` says to
    /// ask about the epoch before.
    static func reconcile(_ store: EventStore, answer: Replication.EpochAnswer, leader: String) throws -> (dropped: Int, again: Bool) {
        guard answer.leaderEpoch >= store.epoch else {
            throw Refusal(
                description: "the leader at \(leader) is in epoch \(answer.leaderEpoch), behind this follower's \(store.epoch); it is stale, so nothing is applied from it")
        }
        if let startID = answer.startID, let crc = answer.startCRC, let cut = try store.conflictingEpoch((answer.epoch, startID, crc)) {
            return (try store.truncate(after: cut), true)
        }
        let dropped = try store.divergence(leaderEnd: (answer.epoch, answer.endID)).map { try store.truncate(after: $0) } ?? 0
        // This log did not have the epoch the leader answered about: ask about its latest again.
        return (dropped, store.epoch != answer.epoch)
    }

    /// Applies a pull's groups, then, with `sync`, makes them durable (unless the store never
    /// syncs; the `Follower` service syncs them itself, while catching up beside the next
    /// pull's apply). Only
    /// when the leader answered in the epoch the log was reconciled against: a leader's log only
    /// grows within an epoch, so the groups extend what was reconciled; in another epoch the
    /// node at that address may have truncated and diverged since, so nothing is applied and
    /// nil is returned (reconcile again). Records the leader's confirmed watermark (`confirmed`:
    /// what a promotion of this node must not lose). Returns the last applied id.
    static func apply(_ store: EventStore, groups: [[UInt8]], leaderEpoch: UInt64, reconciledAt: UInt64, confirmed: EventID, sync: Bool = true) throws -> EventID? {
        guard leaderEpoch == reconciledAt else { return nil }
        var last = store.lastID
        for group in groups { last = try store.applyShipped(group) }
        try store.noteConfirmed(confirmed)
        if sync && !groups.isEmpty && store.options.durability != .never { store.syncShipped() }
        return last
    }
}
