import BanyanServer
import EventLog
import GRPCCore
import SwiftProtobuf

/// CelestialTree's `celestialtree.v1.CelestialTreeService/Emit`, as its server answers it:
/// `EmitRequest{type, message, payload, parents}` → `EmitResponse{id}`, bad input
/// `INVALID_ARGUMENT "emit failed: <reason>"`. It is `POST /emit` over gRPC: the same checks,
/// durability, replicas and role (write).
struct CelestialTreeService: Celestialtree_V1_CelestialTreeService.ServiceProtocol {
    let limits: Limits
    let call: GRPCCall
    let writes: Writes

    /// Built once: a call should not rebuild the server's operations on the hot path.
    init(server: BanyanServer) {
        limits = server.store.limits
        call = GRPCCall(server: server)
        writes = server.native.writes
    }

    func emit(
        request: ServerRequest<Celestialtree_V1_EmitRequest>, context: ServerContext
    ) async throws -> ServerResponse<Celestialtree_V1_EmitResponse> {
        let m = request.message
        let id = try await call.run(Celestialtree_V1_CelestialTreeService.Method.Emit.descriptor, role: .write, metadata: request.metadata, summary: "emit failed") {
            // /emit's body limit: the transport's own is the larger one of Append batches.
            let size = try (m.serializedBytes() as [UInt8]).count
            guard size <= limits.eventBodyBytesMax else {
                throw APIError(.contentTooLarge, "emit failed", detail: "the request is \(size) bytes, more than \(limits.eventBodyBytesMax)")
            }
            guard m.parents.count <= limits.parentsPerEventMax else {
                throw APIError(.badRequest, "emit failed", detail: "parents has " + AppendRequest.tooManyParents(m.parents.count, limits))
            }
            let payload = m.hasPayload ? try Self.json(.structValue(m.payload), depthMax: limits.jsonDepthMax) : nil
            return try await writes.emit(AppendRequest(type: m.type, parents: m.parents, message: m.message, payload: payload), redirecting: nil)
        }
        var response = Celestialtree_V1_EmitResponse()
        response.id = id
        return ServerResponse(message: response)
    }

    /// A double as Go's protojson writes it: the shortest digits that read back as the same
    /// double, in plain notation from 1e-6 up to 1e21 (`0.00001`, `100000000000000000000`), in
    /// exponent notation outside it with the exponent's digits unpadded (`1e-7`, `1.5e+21`).
    static func goNumber(_ n: Double) -> String {
        guard n != 0 else { return n.sign == .minus ? "-0" : "0" }
        // Swift's description has the shortest round-trip digits too; only the notation differs.
        let text = n.magnitude.description
        let parts = text.split(separator: "e")
        let mantissa = parts[0]
        let shift = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        let point = mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count
        var digits = Array(mantissa.filter { $0 != "." })
        var exponent = point + shift  // value = 0.digits × 10^exponent
        while digits.first == "0" {
            digits.removeFirst()
            exponent -= 1
        }
        while digits.last == "0" { digits.removeLast() }
        let sign = n.sign == .minus ? "-" : ""
        if n.magnitude < 1e-6 || n.magnitude >= 1e21 {
            let e = exponent - 1
            let rest = digits.count > 1 ? "." + String(digits.dropFirst()) : ""
            return sign + String(digits[0]) + rest + "e" + (e < 0 ? "-" : "+") + String(e.magnitude)
        }
        if exponent <= 0 { return sign + "0." + String(repeating: "0", count: -exponent) + String(digits) }
        if exponent >= digits.count { return sign + String(digits) + String(repeating: "0", count: exponent - digits.count) }
        return sign + String(digits[..<exponent]) + "." + String(digits[exponent...])
    }

    /// A `google.protobuf.Value` as JSON, as CelestialTree's server stores it (Go's protojson):
    /// object members in key order, numbers as `goNumber` writes them, NaN and infinities refused.
    /// Nesting counts containers from 2, where `/emit`'s parser puts its payload (inside the body
    /// object), so both refuse the same payloads and an export of either imports again.
    static func json(_ kind: Google_Protobuf_Value.OneOf_Kind?, depthMax: Int, depth: Int = 2) throws -> JSONValue {
        func nested() throws {
            guard depth <= depthMax else {
                throw APIError(.badRequest, "emit failed", detail: "invalid payload: nested deeper than \(depthMax) levels")
            }
        }
        switch kind {
        case nil, .nullValue?: return .null
        case .boolValue(let b)?: return .bool(b)
        case .stringValue(let s)?: return .string(s)
        case .numberValue(let n)?:
            guard n.isFinite else { throw APIError(.badRequest, "emit failed", detail: "invalid payload: \(n) is not a JSON number") }
            return .number(goNumber(n))
        case .listValue(let list)?:
            try nested()
            return .array(try list.values.map { try json($0.kind, depthMax: depthMax, depth: depth + 1) })
        case .structValue(let object)?:
            try nested()
            return .object(try object.fields.keys.sorted().map { key in
                JSONMember(key: key, value: try json(object.fields[key]?.kind, depthMax: depthMax, depth: depth + 1))
            })
        }
    }
}
