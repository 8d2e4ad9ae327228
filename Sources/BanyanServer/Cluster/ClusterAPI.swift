import EventLog
import Hummingbird

/// `POST /v1/admin/handover?to=URL` (admin): the cluster's leader hands its leadership to the
/// member at URL (`ClusterMember.handOver`, docs/REPLICATION.md, "Cluster mode"). `409` outside
/// cluster mode or on a node that does not lead; `400` naming `to` for a URL that is not a live
/// member; `504` when the target does not catch up or take over in time.
struct ClusterAPI: Sendable {
    let member: ClusterMember?

    var routes: [Route] {
        [Route(.post, "/v1/admin/handover", role: .admin) { request, _ in try await handOver(request) }]
    }

    private func handOver(_ request: Request) async throws -> Response {
        guard let target = try QueryString(request).get("to"), !target.isEmpty else {
            throw APIError.invalid("to names the member to hand the leadership to (its advertised URL)", field: "to")
        }
        guard let member else { throw APIError(.conflict, "not in a cluster", detail: "this node was not started with --cluster") }
        do {
            let epoch = try await member.handOver(to: target)
            return JSONResponse.make(JSONValue.members(["from": .string(member.url), "to": .string(target), "epoch": .int(epoch)]))
        } catch let error as ClusterMember.HandoverError {
            switch error {
            case .notLeader: throw APIError(.conflict, "not the leader", detail: "\(error)")
            case .inProgress: throw APIError(.conflict, "handover in progress", detail: "\(error)")
            case .unknownTarget: throw APIError.invalid("\(error)", field: "to")
            case .behind, .notTaken: throw APIError(.gatewayTimeout, "handover incomplete", detail: "\(error)")
            }
        }
    }
}
