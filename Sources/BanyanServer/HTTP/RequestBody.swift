import EventLog
import Hummingbird
import NIOCore

/// Reading request bodies: bounded collection and strict JSON objects.
public enum RequestBody {
    /// The media type of a request body, which must be JSON (or one of `also`): 415 otherwise,
    /// also when `Content-Type` is missing. An HTML form cannot send these types, so a
    /// cross-site form cannot write, and a browser asks (a CORS preflight) before a page's
    /// script may.
    @discardableResult
    public static func requireJSON(_ request: Request, also: [String] = []) throws -> String {
        try requireJSON(contentType: request.headers[.contentType], also: also)
    }

    @discardableResult
    static func requireJSON(contentType: String?, also: [String] = []) throws(APIError) -> String {
        let raw = contentType ?? ""
        if mediaType(raw, is: "application/json") { return "application/json" }
        if let other = also.first(where: { mediaType(raw, is: $0) }) { return other }
        let accepted = (["application/json"] + also).joined(separator: " or ")
        throw APIError(
            .unsupportedMediaType, "unsupported content type",
            detail: raw.isEmpty ? "send Content-Type: \(accepted)" : "send Content-Type: \(accepted), not \(raw)"
        ).naming("Content-Type")
    }

    /// Whether a `Content-Type` value names `type` (lower-case), ignoring case, surrounding
    /// white space and parameters (`; charset=utf-8`). Bytes, no allocation: every write checks it.
    static func mediaType(_ value: String, is type: String) -> Bool {
        let bytes = value.utf8
        var i = bytes.startIndex
        while i < bytes.endIndex, bytes[i] == 0x20 || bytes[i] == 0x09 { i = bytes.index(after: i) }
        for expected in type.utf8 {
            guard i < bytes.endIndex else { return false }
            let b = bytes[i]
            guard (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) == expected else { return false }
            i = bytes.index(after: i)
        }
        while i < bytes.endIndex, bytes[i] == 0x20 || bytes[i] == 0x09 { i = bytes.index(after: i) }
        return i == bytes.endIndex || bytes[i] == UInt8(ascii: ";")
    }

    /// Collects the body, refusing more than `bytesMax` with 413.
    public static func bytes(_ request: Request, bytesMax: Int) async throws -> [UInt8] {
        do {
            let buffer = try await request.body.collect(upTo: bytesMax)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge(bytesMax)
        } catch is NIOTooManyBytesError {
            throw tooLarge(bytesMax)
        }
    }

    private static func tooLarge(_ bytesMax: Int) -> APIError {
        APIError(.contentTooLarge, "body too large", detail: "request body is larger than \(bytesMax) bytes")
    }

    /// Parses a JSON object whose member names must all be in `allowed` (CelestialTree rejects
    /// unknown fields, so a typo never silently drops data).
    static func object(_ bytes: [UInt8], allowed: Set<String>, depthMax: Int) throws -> JSONValue {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes, depthMax: depthMax)
        } catch {
            throw APIError.invalidJSON(error.description).naming(error.field ?? "body")
        }
        guard let members = value.objectValue else {
            throw APIError.invalidJSON("body must be a JSON object, not \(value.typeName)")
        }
        for member in members where !allowed.contains(member.key) {
            throw APIError.invalidJSON("json: unknown field \"\(member.key)\"")
        }
        return value
    }

    /// An optional string member (null counts as absent).
    static func string(_ object: JSONValue, _ name: String) throws -> String? {
        guard let value = object[name], !value.isNull else { return nil }
        guard let s = value.stringValue else { throw APIError.invalidJSON("field \"\(name)\" must be a string, not \(value.typeName)") }
        return s
    }

    /// An optional integer member (null counts as absent) that must lie in `range`.
    static func integer(_ object: JSONValue, _ name: String, field: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = object[name], !value.isNull else { return nil }
        guard let n = value.int64Value, n >= range.lowerBound, n <= range.upperBound else {
            throw APIError.invalid("\(field) must be an integer in \(range.lowerBound)...\(range.upperBound)", field: field)
        }
        return Int(n)
    }

    /// An optional array of non-negative integer ids (null counts as absent), at most `countMax`.
    static func ids(_ object: JSONValue, _ name: String, countMax: Int) throws -> [EventID]? {
        guard let value = object[name], !value.isNull else { return nil }
        guard let items = value.arrayValue else { throw APIError.invalidJSON("field \"\(name)\" must be an array of ids") }
        guard items.count <= countMax else {
            throw APIError(.badRequest, "too many ids", detail: "field \"\(name)\" has \(items.count) entries, at most \(countMax) allowed")
        }
        var ids: [EventID] = []
        ids.reserveCapacity(items.count)
        for item in items {
            guard let id = item.uint64Value else {
                throw APIError.invalidJSON("field \"\(name)\" must hold unsigned integer ids, found \(item.typeName)")
            }
            ids.append(id)
        }
        return ids
    }
}

/// Path ids: decimal digits only, no leading zero, 1...UInt64.max (CelestialTree: "bad id"
/// otherwise), so one event has one URL.
enum PathID {
    static func parse(_ text: Substring) throws -> EventID {
        guard !text.isEmpty, text.first != "0", text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = UInt64(text), id > 0 else {
            throw APIError.badID
        }
        return id
    }
}
