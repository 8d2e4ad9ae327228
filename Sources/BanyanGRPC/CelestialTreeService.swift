import BanyanServer
import EventLog
import GRPCCore
import SwiftProtobuf

/// CelestialTree's `celestialtree.v1.CelestialTreeService/Emit`, as its server answers it:
/// `EmitRequest{type, message, payload, parents}` → `EmitResponse{id}`, bad input
/// `INVALID_ARGUMENT "emit failed: <reason>"`. It is `POST /emit` over gRPC: the same checks,
/// durability, replicas and role (write).
struct CelestialTreeService: Celestialtree_V1_CelestialTreeService.ServiceProtocol {
    let server: BanyanServer
    var call: GRPCCall { GRPCCall(server: server) }

    func emit(
        request: ServerRequest<Celestialtree_V1_EmitRequest>, context: ServerContext
    ) async throws -> ServerResponse<Celestialtree_V1_EmitResponse> {
        let m = request.message
        let id = try await call.run(Celestialtree_V1_CelestialTreeService.Method.Emit.descriptor, role: .write, metadata: request.metadata, summary: "emit failed") {
            let limits = server.store.limits
            guard m.parents.count <= limits.parentsPerEventMax else {
                throw APIError(.badRequest, "emit failed", detail: "parents has \(m.parents.count) entries, more than parentsPerEventMax \(limits.parentsPerEventMax)")
            }
            let payload = m.hasPayload ? try Self.json(.structValue(m.payload), depthMax: limits.jsonDepthMax) : nil
            return try await server.native.writes.emit(
                type: m.type, parents: m.parents, message: m.message.isEmpty ? nil : m.message, payload: payload, redirecting: nil)
        }
        var response = Celestialtree_V1_EmitResponse()
        response.id = id
        return ServerResponse(message: response)
    }

    /// A `google.protobuf.Value` as JSON, as CelestialTree's server stores it (Go's protojson):
    /// object members in key order, whole numbers without a fraction, NaN and infinities refused.
    static func json(_ kind: Google_Protobuf_Value.OneOf_Kind?, depthMax: Int, depth: Int = 1) throws -> JSONValue {
        guard depth <= depthMax else {
            throw APIError(.badRequest, "emit failed", detail: "invalid payload: nested deeper than \(depthMax) levels")
        }
        switch kind {
        case nil, .nullValue?: return .null
        case .boolValue(let b)?: return .bool(b)
        case .stringValue(let s)?: return .string(s)
        case .numberValue(let n)?:
            guard n.isFinite else { throw APIError(.badRequest, "emit failed", detail: "invalid payload: \(n) is not a JSON number") }
            if n == n.rounded(), abs(n) < 1e21 { return .number(String(format: "%.0f", n)) }
            return .number("\(n)")
        case .listValue(let list)?:
            return .array(try list.values.map { try json($0.kind, depthMax: depthMax, depth: depth + 1) })
        case .structValue(let object)?:
            return .object(try object.fields.keys.sorted().map { key in
                JSONMember(key: key, value: try json(object.fields[key]?.kind, depthMax: depthMax, depth: depth + 1))
            })
        }
    }
}
