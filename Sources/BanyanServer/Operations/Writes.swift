import EventLog

/// The write path every transport shares (HTTP `POST /v1/events` and `/emit`, gRPC `Append` and
/// CelestialTree's `Emit`): leadership, reserved types, the store, the lease and the replicas a
/// write waits for. Transports decode their requests and encode the answer; what a write means
/// and what its acknowledgement promises are decided here once.
package struct Writes: Sendable {
    let store: EventStore
    let replication: ReplicationState
    let config: ServerConfiguration

    /// A stored batch: the store's receipt and, when replicas were asked for, how many confirmed.
    package struct Outcome: Sendable {
        package var receipt: AppendReceipt
        package var replicas: Int?
    }

    /// A native batch. `redirecting`: the path and query a follower's `307` names (nil: no
    /// `Location`, for transports that cannot follow one). `replicas`: already checked with
    /// `ReplicationState.replicasWanted`.
    package func append(_ requests: [AppendRequest], durability: Durability?, replicas: Int, redirecting: String?) async throws -> Outcome {
        // HTTP routes check before reading the body (a follower redirects at once); this second
        // check sees a role that changed while the body was read.
        try replication.requireLeader(redirecting: redirecting)
        let receipt: AppendReceipt
        // The term the batch is stored in (or it fails): it is acknowledged only within it.
        let term = store.epoch
        do {
            for (index, request) in requests.enumerated() { try request.refuseReservedType(index: index) }
            receipt = try await store.append(requests, durability: durability)
        } catch let error as LogError {
            throw APIError.fromBatch(error)
        }
        let stored = {
            [("results", JSONValue.array(receipt.results.map { result in
                .object([JSONMember(key: "id", value: .int(result.id))] + (result.duplicate ? [JSONMember(key: "duplicate", value: .bool(true))] : []))
            })), ("durable", .bool(receipt.durable))]
        }
        try replication.confirmLease(term: term, stored: stored())
        var confirmed: Int?
        if replicas > 0, let through = receipt.results.map(\.id).max() {
            confirmed = try await replication.awaitReplicas(replicas, through: through, term: term, timeout: config.replicaTimeout, stored: stored())
        }
        return Outcome(receipt: receipt, replicas: confirmed)
    }

    /// One event as CelestialTree's `/emit` and `Emit` take it: errors say "emit failed" with
    /// CelestialTree's details, and `--min-replicas` covers it (its answer has no room for a count).
    package func emit(type: String, parents: [EventID], message: String?, payload: JSONValue?, redirecting: String?) async throws -> EventID {
        try replication.requireLeader(redirecting: redirecting)
        let append = AppendRequest(type: type, parents: parents, message: message, payload: payload)
        let term = store.epoch
        let receipt: AppendReceipt
        do {
            try append.refuseReservedType()
            receipt = try await store.append([append])
        } catch let error as LogError {
            throw APIError.from(error, summary: "emit failed", withIndex: false)
        }
        let id = receipt.results[0].id
        try replication.confirmLease(term: term, stored: [("id", .int(id))])
        _ = try await replication.awaitReplicas(config.minReplicas, through: id, term: term, timeout: config.replicaTimeout, stored: [("id", .int(id))])
        return id
    }
}
