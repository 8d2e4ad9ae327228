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

    private func follow() async throws {
        var backoff = Self.backoffMin
        var failing = false
        /// The leader epoch the log was last reconciled against (nil: not yet).
        var reconciledAt: UInt64?
        while !Task.isCancelled && replication.role == .follower {
            do {
                if reconciledAt == nil { reconciledAt = try await reconcile() }
                let leaderEpoch = try await pullOnce()
                if leaderEpoch != reconciledAt { reconciledAt = nil }
                if failing { logger.notice("replication: reached the leader again", metadata: ["leader": "\(client.baseURL)"]) }
                failing = false
                backoff = Self.backoffMin
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                if let error = error as? BanyanClientError, error.status == 409 { reconciledAt = nil }
                if replication.role != .follower { break }
                if !failing || backoff == Self.backoffMax {
                    logger.warning("replication: pull failed", metadata: ["leader": "\(client.baseURL)", "error": "\(error)"])
                }
                failing = true
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, Self.backoffMax)
            }
        }
    }

    /// Drops the tail the leader does not have; returns the leader's epoch.
    private func reconcile() async throws -> UInt64 {
        let answer = try await client.epochEnd(store.epoch)
        guard answer.leaderEpoch >= store.epoch else {
            throw Refusal(description: "the leader at \(client.baseURL) is in epoch \(answer.leaderEpoch), behind this follower's \(store.epoch); it is stale, so nothing is applied from it")
        }
        let store = self.store
        if let cut = store.divergence(leaderEnd: (answer.epoch, answer.endID)) {
            let dropped = try await Blocking.run { try store.truncate(after: cut) }
            replication.counters.truncatedEvents.add(dropped, ordering: .relaxed)
            logger.warning("replication: dropped a tail the leader does not have", metadata: [
                "after": "\(cut)", "events": "\(dropped)", "leader_epoch": "\(answer.leaderEpoch)",
            ])
        }
        return answer.leaderEpoch
    }

    /// One pull; returns the leader's epoch.
    private func pullOnce() async throws -> UInt64 {
        let applied = store.lastID
        let report = Replication.Report(follower: replication.advertise, appliedID: applied, durableID: store.durableID, epoch: store.epoch)
        let pull = try await client.pullGroups(after: applied, report: report, waitMs: waitMs, bytesMax: bytesMax)
        guard pull.leaderEpoch >= store.epoch else {
            throw Refusal(description: "the leader at \(client.baseURL) answered in epoch \(pull.leaderEpoch), behind this follower's \(store.epoch)")
        }
        let store = self.store
        let groups = pull.groups
        let last = try await Blocking.run { () throws -> EventID in
            var last = applied
            for group in groups { last = try store.applyShipped(group) }
            if !groups.isEmpty && store.options.durability != .never { store.syncShipped() }
            return last
        }
        replication.counters.groupsApplied.add(groups.count, ordering: .relaxed)
        replication.counters.bytesApplied.add(pull.bytes, ordering: .relaxed)
        replication.pulled(leaderLastID: pull.leaderLastID, leaderEpoch: pull.leaderEpoch, appliedID: last)
        return pull.leaderEpoch
    }
}
