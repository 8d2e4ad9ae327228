import EventLog

/// Turns a `POST /v1/events` body (a JSON array, one object, or NDJSON) into append requests,
/// naming the index and field of the first bad event. Nothing is appended unless all decode.
/// The decoding itself is `AppendRequest.decodeBatch` (streaming, no JSON tree); this maps its
/// errors onto the HTTP contract.
package enum BatchDecoder {
    static func decode(_ body: [UInt8], ndjson: Bool, limits: Limits) throws -> [AppendRequest] {
        do {
            return try AppendRequest.decodeBatch(body, ndjson: ndjson, limits: limits)
        } catch {
            throw apiError(error)
        }
    }

    /// The HTTP contract's error for a refused batch, whichever transport brought it.
    package static func apiError(_ error: AppendBatchError) -> APIError {
        switch error.kind {
        case .syntax:
            var e = APIError.invalidJSON(error.reason).naming(error.field ?? "body")
            e.index = error.index
            return e
        case .shape:
            return APIError.invalidJSON(error.reason).naming("body")
        case .invalidEvent:
            return APIError.invalid(error.reason, field: error.field ?? "events", index: error.index, error: "invalid event")
        case .tooLarge:
            return APIError(.contentTooLarge, "batch too large", detail: error.reason).naming("body")
        case .empty:
            return APIError.invalid(error.reason, field: "body")
        }
    }
}
