import BanyanClient
import EventLog
import HTTPTypes
import Hummingbird

/// Where replication meets ordinary requests (docs/REPLICATION.md): writes on a node that is not
/// the leader are redirected (or refused), writes that ask for replicas wait for them, and reads
/// that name an id they must see wait until this node has applied it.
extension ReplicationState {
    /// Lets a write through on the leader. On a follower that knows its leader: `307 Temporary
    /// Redirect` to the same path and query there, so plain HTTP clients (the `celestialtree`
    /// Python client among them) follow it with the same body. Without a known leader, or on a
    /// fenced node: `503` with `Retry-After`.
    func requireLeader(for request: Request) throws {
        try requireLeader(redirecting: request.uri.description)
    }

    /// The same check for a write that cannot be redirected (gRPC): `redirecting` nil still
    /// answers `307` naming the leader, without a `Location`.
    package func requireLeader(redirecting target: String?) throws {
        switch role {
        case .leader:
            if let target = handingOver.withLock({ $0 }) {
                var error = APIError(.serviceUnavailable, "not the leader", detail: "this node is handing its leadership to \(target); retry there shortly")
                error.headers[.retryAfter] = "1"
                error.members = [("leader", .null)]
                throw error
            }
            return
        case .follower:
            if let leader {
                var error = APIError(.temporaryRedirect, "not the leader", detail: "this node follows \(leader); send writes to the leader")
                if let target { error.headers[.location] = leader + target }
                error.members = [("leader", .string(leader))]
                throw error
            }
            var error = APIError(.serviceUnavailable, "not the leader", detail: "this node is a follower and knows no leader")
            error.headers[.retryAfter] = "1"
            error.members = [("leader", .null)]
            throw error
        case .fenced:
            var error = APIError(.serviceUnavailable, "not the leader", detail: "this node led epoch \(store.epoch) until a newer epoch superseded it; it takes no writes")
            error.headers[.retryAfter] = "1"
            error.members = [("leader", .null)]
            throw error
        }
    }

    /// The replicas a write needs: `replicas=N` from the request, never below `--min-replicas`.
    static func replicasWanted(_ raw: String?, config: ServerConfiguration) throws -> Int {
        try replicasWanted(requested: try NativeAPI.integer(raw, field: "replicas") ?? 0, config: config)
    }

    package static func replicasWanted(requested: Int, config: ServerConfiguration) throws -> Int {
        let bounds = ServerConfiguration.Bounds.minReplicas
        guard bounds.contains(requested) else {
            throw APIError.invalid("replicas must be \(bounds.lowerBound)...\(bounds.upperBound), not \(requested)", field: "replicas")
        }
        return max(requested, config.minReplicas)
    }

    /// Waits until `wanted` followers hold every id up to `through` durably. Returns how many
    /// do. Throws `504` when too few do within `--replica-timeout-ms`, or `503` when this node
    /// stopped leading meanwhile, each naming what the write did get (`stored`: the members
    /// that say so, e.g. the ids), so the client never reads more into it than happened.
    /// `term`: the epoch the write was stored in.
    func awaitReplicas(_ wanted: Int, through: EventID, term: UInt64, timeout: Duration, stored: [(name: String, value: JSONValue)]) async throws -> Int {
        guard wanted > 0 else { return 0 }
        let confirmed = await waitForReplicas(wanted, through: through, timeout: timeout)
        if confirmed >= wanted {
            // The wait may have outlasted this node's lease (cluster mode).
            try confirmLease(term: term, stored: stored + [("replicas", .int(UInt64(confirmed)))])
            return confirmed
        }
        var error: APIError
        if role != .leader {
            error = APIError(
                .serviceUnavailable, "not the leader",
                detail: "the events are stored on this node, but its term ended before \(wanted) replicas confirmed them (\(confirmed) did); they may be lost")
            error.headers[.retryAfter] = "1"
        } else {
            error = APIError(
                .gatewayTimeout, "replication timeout",
                detail: "the events are stored on the leader, but \(confirmed) of the \(wanted) replicas asked for confirmed them within \(timeout.inMilliseconds) ms")
        }
        error.members = stored + [("replicas", .int(UInt64(confirmed)))]
        throw error
    }
}

/// Read-your-writes: a read naming `min_id` (query parameter, or the `Banyan-Min-Id` header)
/// waits until this node has applied that id, at most `--read-wait-ms`; past it, `503` with
/// `Retry-After` and the id applied so far.
package enum ReadGate {
    static let header = HTTPField.Name.known("Banyan-Min-Id")

    static func wait(_ request: Request, store: EventStore, bound: Duration) async throws {
        let raw = try QueryString(request).get("min_id") ?? request.headers[header]
        try await wait(minID: try NativeAPI.id(raw, field: "min_id"), store: store, bound: bound)
    }

    package static func wait(minID: EventID?, store: EventStore, bound: Duration) async throws {
        guard let minID, minID > store.lastID else { return }
        let deadline = ContinuousClock.now + bound
        while store.lastID < minID {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { break }
            _ = await store.notifier.wait(after: store.lastID, timeout: remaining)
        }
        let applied = store.lastID
        guard applied < minID else { return }
        var error = APIError(.serviceUnavailable, "not yet applied", detail: "this node has applied up to id \(applied), not yet \(minID); retry, or read from the leader").naming("min_id")
        error.headers[.retryAfter] = "1"
        error.members = [("applied_id", .int(applied))]
        throw error
    }
}
