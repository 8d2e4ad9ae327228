import BanyanClient
import EventLog
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The leader's side of log shipping and the role changes (docs/REPLICATION.md):
/// - `GET /v1/replication/groups`: the commit groups after `after`, read back from storage
///   (`EventStore.shippableGroups`), framed (`Replication.frame`); a long poll when the follower
///   is caught up. Each pull carries the follower's report, which the leader records.
/// - `GET /v1/replication/epoch?epoch=E`: where epoch E ends in this log, for a follower
///   finding where its log diverges (`EventStore.epochEnd`).
/// - `POST /v1/admin/promote`: this follower becomes the leader of a new epoch.
struct ReplicationAPI: Sendable {
    let store: EventStore
    let replication: ReplicationState
    let config: ServerConfiguration
    let logger: Logger

    static let waitMsMax = 30_000
    static let bytesMaxDefault = 4 << 20
    static let bytesMaxRange = (64 << 10)...(64 << 20)
    /// The longest `Banyan-Follower` URL a leader records.
    static let followerURLBytesMax = 512

    var routes: [Route] {
        // Pulling the log is reading all of it, and a follower's report counts towards
        // acknowledgements (`replicas=N`): the write role.
        [
            Route(.get, Replication.path, role: .write) { request, _ in try await groups(request) },
            Route(.get, Replication.epochPath, role: .write) { request, _ in try epochEnd(request) },
            Route(.post, "/v1/admin/promote", role: .admin) { request, _ in try await promote(request) },
        ]
    }

    private func groups(_ request: Request) async throws -> Response {
        let query = try QueryString(request)
        let after = try NativeAPI.id(query.get("after"), field: "after") ?? 0
        let waitMs = try NativeAPI.integer(query.get("wait_ms"), field: "wait_ms") ?? 0
        guard (0...Self.waitMsMax).contains(waitMs) else { throw APIError.invalid("wait_ms must be 0...\(Self.waitMsMax)", field: "wait_ms") }
        let bytesMax = try NativeAPI.integer(query.get("bytes_max"), field: "bytes_max") ?? Self.bytesMaxDefault
        guard Self.bytesMaxRange.contains(bytesMax) else {
            throw APIError.invalid("bytes_max must be \(Self.bytesMaxRange.lowerBound)...\(Self.bytesMaxRange.upperBound)", field: "bytes_max")
        }
        let report = try Self.report(request, after: after)
        let replication = self.replication
        do {
            try replication.acceptPull(after: after, report: report)
            if after == store.lastID, waitMs > 0 {
                _ = await store.notifier.wait(after: after, timeout: .milliseconds(waitMs))
            }
            let groups = try await Blocking.run { try replication.shippableGroups(after: after, bytesMax: bytesMax) }
            return response(groups)
        } catch let refusal as ReplicationState.PullRefusal {
            throw Self.apiError(refusal)
        }
    }

    private func response(_ groups: [[UInt8]]) -> Response {
        let body = Replication.frame(groups)
        replication.counters.groupsShipped.add(groups.count, ordering: .relaxed)
        replication.counters.bytesShipped.add(body.count, ordering: .relaxed)
        return Response(
            status: .ok,
            headers: [
                .contentType: Replication.contentType, .contentLength: String(body.count),
                Self.lastIDHeader: String(store.lastID), Self.epochHeader: String(store.epoch), Self.leaderHeader: replication.advertise,
                Self.formatHeader: String(Replication.formatVersion), Self.confirmedHeader: String(replication.confirmedWatermark),
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The follower's report in a pull's headers; nil when the puller sends none (a tool).
    static func report(_ request: Request, after: EventID) throws -> Replication.Report? {
        guard let url = request.headers[followerHeader] else { return nil }
        guard !url.isEmpty, url.utf8.count <= followerURLBytesMax, url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw APIError.invalid(
                "\(Replication.Header.follower) must be the follower's http(s) URL of at most \(followerURLBytesMax) bytes", field: Replication.Header.follower)
        }
        if let format = request.headers[formatHeader], format != String(Replication.formatVersion) {
            throw APIError(.conflict, "incompatible format", detail: "the follower speaks replication format \(format), this leader \(Replication.formatVersion)").naming(Replication.Header.format)
        }
        return Replication.Report(
            follower: url,
            appliedID: try NativeAPI.id(request.headers[appliedHeader], field: Replication.Header.appliedID) ?? after,
            durableID: try NativeAPI.id(request.headers[durableHeader], field: Replication.Header.durableID) ?? 0,
            epoch: try NativeAPI.id(request.headers[epochHeader], field: Replication.Header.epoch) ?? 0,
            leaderEpoch: try NativeAPI.id(request.headers[leaderEpochHeader], field: Replication.Header.leaderEpoch)
                ?? { throw APIError.invalid("\(Replication.Header.leaderEpoch) is required with \(Replication.Header.follower)", field: Replication.Header.leaderEpoch) }())
    }

    static func apiError(_ refusal: ReplicationState.PullRefusal) -> APIError {
        switch refusal {
        case .notLeader(let detail):
            return APIError(.conflict, "not the leader", detail: detail)
        case .staleEpoch(let follower, let leader):
            // `observe` (in the responder) fenced this node already; say why.
            return APIError(.conflict, "stale epoch", detail: "the follower is in epoch \(follower), this node in \(leader): a newer leader exists")
                .naming(Replication.Header.epoch)
        case .ahead(let after, let lastID):
            return APIError(.conflict, "follower ahead of the leader", detail: "the follower asks after id \(after), but the leader's log ends at \(lastID)")
                .naming("after")
        case .leaderEpochMismatch(let follower, let leader):
            return APIError(
                .conflict, "leader epoch mismatch",
                detail: "the follower reconciled its log against epoch \(follower), this leader is in epoch \(leader); reconcile again")
                .naming(Replication.Header.leaderEpoch)
        case .notBoundary(let message):
            return APIError(.conflict, "not a group boundary", detail: "\(message): the follower's log diverges from the leader's").naming("after")
        }
    }

    private func requireLeader() throws {
        do {
            try replication.requireLeading()
        } catch {
            throw Self.apiError(error)
        }
    }

    private func epochEnd(_ request: Request) throws -> Response {
        let query = try QueryString(request)
        guard let epoch = try NativeAPI.id(query.get("epoch"), field: "epoch") else {
            throw APIError.invalid("epoch is required", field: "epoch")
        }
        try requireLeader()
        let answer: Replication.EpochAnswer
        do {
            answer = try replication.epochAnswer(for: epoch)
        } catch let error as LogError {
            throw APIError.from(error, summary: "cannot read the epoch history")
        }
        return JSONResponse.make(JSONValue.members([
            "epoch": .int(answer.epoch), "end_id": .int(answer.endID),
            "start_id": answer.startID.map { .int($0) } ?? .null, "start_crc": answer.startCRC.map { .int(UInt64($0)) } ?? .null,
            "leader_epoch": .int(answer.leaderEpoch), "last_id": .int(answer.lastID),
        ]))
    }

    private func promote(_ request: Request) async throws -> Response {
        // The highest epoch the operator knows of: a follower that never heard of the newest
        // epoch would otherwise begin one with the same number (docs/REPLICATION.md).
        let query = try QueryString(request)
        let afterEpoch = try NativeAPI.id(query.get("after_epoch"), field: "after_epoch") ?? 0
        let force = try query.flag("force")
        guard replication.leaseGate.withLock({ $0 }) == nil else {
            throw APIError(.conflict, "cannot promote", detail: "this node is in a cluster: its leader is chosen by the election in etcd")
        }
        guard replication.role == .follower else {
            let detail = replication.role == .leader
                ? "this node is already the leader (epoch \(store.epoch))"
                : "this node was fenced; restart it with --follow <new leader> to rejoin"
            throw APIError(.conflict, "cannot promote", detail: detail)
        }
        let epoch: UInt64
        do {
            epoch = try await store.promote(leader: replication.advertise, epochAtLeast: max(afterEpoch, replication.followerView.leaderEpoch), allowingLoss: force)
        } catch let error as LogError {
            throw APIError.from(error, summary: "cannot promote")
        }
        let former = replication.leader
        replication.becameLeader()
        logger.notice("promoted to leader", metadata: ["epoch": "\(epoch)", "former_leader": "\(former ?? "none")"])
        if let former { Task { await FormerLeader.fence(former, epoch: epoch, token: config.leaderToken, logger: logger) } }
        return JSONResponse.make(JSONValue.members([
            "role": .string("leader"), "epoch": .int(epoch), "leader": .string(replication.advertise), "last_id": .int(store.lastID),
        ]))
    }

    static let followerHeader = HTTPField.Name.known(Replication.Header.follower)
    static let appliedHeader = HTTPField.Name.known(Replication.Header.appliedID)
    static let durableHeader = HTTPField.Name.known(Replication.Header.durableID)
    static let epochHeader = HTTPField.Name.known(Replication.Header.epoch)
    static let leaderEpochHeader = HTTPField.Name.known(Replication.Header.leaderEpoch)
    static let confirmedHeader = HTTPField.Name.known(Replication.Header.confirmedID)
    static let lastIDHeader = HTTPField.Name.known(Replication.Header.lastID)
    static let leaderHeader = HTTPField.Name.known(Replication.Header.leader)
    static let formatHeader = HTTPField.Name.known(Replication.Header.format)
}

/// A new leader tells its former leader about the new epoch, best effort: a request carrying
/// `Banyan-Epoch` fences a leader of an older epoch (`ReplicationState.observe`). The former
/// leader is usually dead; if it is alive and unreachable now, followers pulling from it, or
/// any client presenting the epoch, fence it later.
enum FormerLeader {
    static func fence(_ url: String, epoch: UInt64, token: String?, logger: Logger) async {
        let client = BanyanHTTPClient(baseURL: url, token: token)
        do {
            try await client.presentEpoch(epoch)
            logger.notice("told the former leader about the new epoch", metadata: ["former_leader": "\(url)", "epoch": "\(epoch)"])
        } catch {
            logger.notice("could not reach the former leader to fence it", metadata: ["former_leader": "\(url)", "error": "\(error)"])
        }
    }
}

extension HTTPField.Name {
    /// A field name known to be valid: a literal of this code base.
    static func known(_ name: String) -> Self {
        guard let field = Self(name) else { preconditionFailure("\(name) is not a valid HTTP field name") }
        return field
    }
}
