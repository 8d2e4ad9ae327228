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
        try await commit(requests, durability: durability, replicas: replicas, redirecting: redirecting, failure: APIError.fromBatch) { receipt in
            [("results", JSONValue.array(receipt.results.map { result in
                .object([JSONMember(key: "id", value: .int(result.id))] + (result.duplicate ? [JSONMember(key: "duplicate", value: .bool(true))] : []))
            })), ("durable", .bool(receipt.durable))]
        }
    }

    /// One event as CelestialTree's `/emit` and `Emit` take it: errors say "emit failed" with
    /// CelestialTree's details, and `--min-replicas` covers it (its answer has no room for a count).
    package func emit(_ request: AppendRequest, redirecting: String?) async throws -> EventID {
        let outcome = try await commit([request], durability: nil, replicas: config.minReplicas, redirecting: redirecting, failure: Self.emitFailure) {
            receipt in Self.emitStored(receipt)
        }
        return outcome.receipt.results[0].id
    }

    /// One emit for `emitNow`, and what to call with its id.
    struct EmitNow {
        var request: AppendRequest
        var done: @Sendable (Result<EventID, any Error>) -> Void
    }

    /// `emit` without a task, for the event loop (`FastEmit`): the same checks, errors and
    /// acknowledgement as `commit`, in the same order, for each emit; each `done` runs on the
    /// writer's thread (or at once, for a refusal). Emits handed over in one call are queued
    /// together, so they can share a commit group. Not with `--min-replicas`, whose wait needs
    /// a task.
    func emitNow(_ emits: [EmitNow], redirecting: String?) {
        precondition(config.minReplicas == 0, "emitNow cannot wait for replicas")
        var batches: [AppendBatch] = []
        batches.reserveCapacity(emits.count)
        for emit in emits {
            let term: UInt64
            do {
                try replication.requireLeader(redirecting: redirecting)
                term = store.epoch
                try emit.request.refuseReservedType(index: 0)
            } catch let error as LogError {
                emit.done(.failure(Self.emitFailure(error)))
                continue
            } catch {
                emit.done(.failure(error))
                continue
            }
            batches.append(AppendBatch([emit.request]) { [replication, done = emit.done] result in
                done(Result {
                    let receipt: AppendReceipt
                    do {
                        receipt = try result.get()
                    } catch let error as LogError {
                        throw Self.emitFailure(error)
                    }
                    try replication.confirmLease(term: term, stored: Self.emitStored(receipt))
                    return receipt.results[0].id
                })
            })
        }
        store.append(batches)
    }

    private static func emitFailure(_ error: LogError) -> APIError {
        APIError.from(error, summary: "emit failed", withIndex: false)
    }

    private static func emitStored(_ receipt: AppendReceipt) -> [(name: String, value: JSONValue)] {
        [("id", .int(receipt.results[0].id))]
    }

    /// Stores `requests` and acknowledges them only within the term they were stored in, after
    /// the replicas asked for. `failure` words a store error for the transport's contract;
    /// `stored` names what was stored, for an answer that cannot acknowledge it.
    private func commit(
        _ requests: [AppendRequest], durability: Durability?, replicas: Int, redirecting: String?, failure: (LogError) -> APIError,
        stored: (AppendReceipt) -> [(name: String, value: JSONValue)]
    ) async throws -> Outcome {
        // HTTP routes check before reading the body (a follower redirects at once); this second
        // check sees a role that changed while the body was read.
        try replication.requireLeader(redirecting: redirecting)
        let receipt: AppendReceipt
        let term = store.epoch
        do {
            for (index, request) in requests.enumerated() { try request.refuseReservedType(index: index) }
            receipt = try await store.append(requests, durability: durability)
        } catch let error as LogError {
            throw failure(error)
        }
        try replication.confirmLease(term: term, stored: stored(receipt))
        var confirmed: Int?
        if replicas > 0, let through = receipt.results.map(\.id).max() {
            confirmed = try await replication.awaitReplicas(replicas, through: through, term: term, timeout: config.replicaTimeout, stored: stored(receipt))
        }
        return Outcome(receipt: receipt, replicas: confirmed)
    }
}
