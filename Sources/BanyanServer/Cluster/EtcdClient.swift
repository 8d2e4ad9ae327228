import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// etcd's v3 API through its JSON gateway (`POST /v3/...`, keys and values base64, 64-bit
/// numbers as strings), the few calls cluster mode needs (docs/REPLICATION.md, "Cluster mode").
/// Plain HTTP with AsyncHTTPClient: no gRPC stack for five calls. Each call tries the endpoints
/// in turn, starting from the one that answered last.
public struct EtcdClient: Sendable {
    public let endpoints: [String]
    let timeout: Duration
    private let preferred = Preferred()

    public struct KeyValue: Sendable, Hashable {
        public var key: String
        public var value: [UInt8]
        public var createRevision: Int64
        public var modRevision: Int64
        public var lease: Int64
    }

    public struct EtcdError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Answers larger than this are refused (a cluster's keys are a few hundred bytes each).
    static let answerBytesMax = 4 << 20

    public init(endpoints: [String], timeout: Duration = .seconds(2)) {
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.timeout = timeout
    }

    /// `--etcd` values: comma-separated http(s) URLs.
    public static func endpoints(_ text: String) throws -> [String] {
        let urls = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !urls.isEmpty, urls.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
            throw EtcdError(description: "--etcd takes comma-separated http:// or https:// URLs, not \"\(text)\"")
        }
        return urls
    }

    /// A lease of `ttl` seconds: its id and the ttl etcd granted.
    public func grant(ttlSeconds: Int) async throws -> (id: Int64, ttl: Int) {
        let answer = try await call("/v3/lease/grant", ["TTL": ttlSeconds])
        guard let id = Self.int(answer["ID"]), let ttl = Self.int(answer["TTL"]), ttl > 0 else {
            throw EtcdError(description: "lease grant: \(answer["error"] ?? "no lease in the answer")")
        }
        return (id, Int(ttl))
    }

    /// Renews the lease; its ttl from now, or 0 when it has expired (it cannot be renewed then).
    public func keepAlive(_ lease: Int64) async throws -> Int {
        let answer = try await call("/v3/lease/keepalive", ["ID": String(lease)])
        // The gateway streams: an error arrives as an `error` member in a 200 answer.
        if let error = answer["error"] { throw EtcdError(description: "lease keepalive: \(error)") }
        guard let result = answer["result"] as? [String: Any] else { throw EtcdError(description: "lease keepalive: no result in the answer") }
        return Int(Self.int(result["TTL"]) ?? 0)
    }

    /// Seconds the lease has left; nil when it has expired or never existed.
    public func timeToLive(_ lease: Int64) async throws -> Int? {
        let ttl = Self.int(try await call("/v3/lease/timetolive", ["ID": String(lease)])["TTL"]) ?? -1
        return ttl >= 0 ? Int(ttl) : nil
    }

    public func revoke(_ lease: Int64) async throws {
        _ = try await call("/v3/lease/revoke", ["ID": String(lease)])
    }

    /// Puts `key` only if it does not exist (etcd's compare on create revision 0): the
    /// compare-and-set. Returns nil when created, the existing key otherwise.
    public func create(_ key: String, value: [UInt8], lease: Int64) async throws -> KeyValue? {
        let k = Self.base64(Array(key.utf8))
        let answer = try await call("/v3/kv/txn", [
            "compare": [["key": k, "target": "CREATE", "create_revision": "0"]],
            "success": [["request_put": ["key": k, "value": Self.base64(value), "lease": String(lease)]]],
            "failure": [["request_range": ["key": k]]],
        ])
        if answer["succeeded"] as? Bool == true { return nil }
        let responses = answer["responses"] as? [[String: Any]] ?? []
        let range = responses.first?["response_range"] as? [String: Any] ?? [:]
        guard let existing = Self.keyValues(range).first else {
            // Gone between the compare and the read: the caller tries again.
            throw EtcdError(description: "\(key) changed while it was created")
        }
        return existing
    }

    /// Puts `key` (bound to `lease`, or to none with 0).
    public func put(_ key: String, value: [UInt8], lease: Int64 = 0) async throws {
        var body: [String: Any] = ["key": Self.base64(Array(key.utf8)), "value": Self.base64(value)]
        if lease != 0 { body["lease"] = String(lease) }
        _ = try await call("/v3/kv/put", body)
    }

    /// The keys under `prefix`, in key order, at most `limit`.
    public func range(prefix: String, limit: Int = 10_000) async throws -> [KeyValue] {
        var end = Array(prefix.utf8)
        // The range end of a prefix: the prefix with its last byte plus one.
        if let last = end.indices.last { end[last] += 1 }
        let answer = try await call("/v3/kv/range", ["key": Self.base64(Array(prefix.utf8)), "range_end": Self.base64(end), "limit": limit])
        return Self.keyValues(answer)
    }

    /// The key, if it exists.
    public func get(_ key: String) async throws -> KeyValue? {
        try await lookUp(key).value
    }

    /// The key, if it exists, and the store's revision when it was read.
    public func lookUp(_ key: String) async throws -> (value: KeyValue?, revision: Int64) {
        let answer = try await call("/v3/kv/range", ["key": Self.base64(Array(key.utf8))])
        return (Self.keyValues(answer).first, Self.int((answer["header"] as? [String: Any])?["revision"]) ?? 0)
    }

    /// Puts `key` only if it is bound to `lease` (so a key this node lost is never overwritten).
    /// Returns whether it did.
    public func put(_ key: String, value: [UInt8], ifLease lease: Int64) async throws -> Bool {
        let k = Self.base64(Array(key.utf8))
        let answer = try await call("/v3/kv/txn", [
            "compare": [["key": k, "target": "LEASE", "lease": String(lease)]],
            "success": [["request_put": ["key": k, "value": Self.base64(value), "lease": String(lease)]]],
        ])
        return answer["succeeded"] as? Bool == true
    }

    /// Deletes `key` only if it is bound to `lease`; returns whether it did.
    public func delete(_ key: String, ifLease lease: Int64) async throws -> Bool {
        let k = Self.base64(Array(key.utf8))
        let answer = try await call("/v3/kv/txn", [
            "compare": [["key": k, "target": "LEASE", "lease": String(lease)]],
            "success": [["request_delete_range": ["key": k]]],
        ])
        return answer["succeeded"] as? Bool == true
    }

    public func delete(_ key: String) async throws {
        _ = try await call("/v3/kv/deleterange", ["key": Self.base64(Array(key.utf8))])
    }

    // MARK: the gateway

    private struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    private final class Preferred: Sendable {
        private let index = Atomic<Int>(0)
        var value: Int { index.load(ordering: .relaxed) }
        func set(_ i: Int) { index.store(i, ordering: .relaxed) }
    }

    private func call(_ path: String, _ body: [String: Any]) async throws -> [String: Any] {
        let bytes = try JSONSerialization.data(withJSONObject: body)
        var failures: [String] = []
        let first = preferred.value
        for offset in endpoints.indices {
            let i = (first + offset) % endpoints.count
            var request = HTTPClientRequest(url: endpoints[i] + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: bytes))
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .init(timeout))
                let data = try await response.body.collect(upTo: Self.answerBytesMax)
                guard let answer = try? JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any] else {
                    throw Unavailable(description: "\(endpoints[i])\(path): HTTP \(response.status.code), not a JSON object")
                }
                guard response.status == .ok else {
                    let why = "\(path): \(answer["message"] ?? answer["error"] ?? "HTTP \(response.status.code)")"
                    // An endpoint without a quorum (5xx) may be one of several: try the next.
                    if response.status.code >= 500 { throw Unavailable(description: why) }
                    // An answer from etcd itself (a bad request, a lease not found): no other
                    // endpoint would answer differently.
                    throw EtcdError(description: why)
                }
                preferred.set(i)
                return answer
            } catch let error as EtcdError {
                throw error
            } catch {
                failures.append("\(endpoints[i]): \(error)")
            }
        }
        throw EtcdError(description: "cannot reach etcd (\(failures.joined(separator: "; ")))")
    }

    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func int(_ value: Any?) -> Int64? {
        switch value {
        case let s as String: Int64(s)
        case let n as NSNumber: n.int64Value
        default: nil
        }
    }

    static func keyValues(_ answer: [String: Any]) -> [KeyValue] {
        (answer["kvs"] as? [[String: Any]] ?? []).compactMap { kv in
            guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
            let v = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return KeyValue(
                key: String(decoding: k, as: UTF8.self), value: Array(v), createRevision: int(kv["create_revision"]) ?? 0,
                modRevision: int(kv["mod_revision"]) ?? 0, lease: int(kv["lease"]) ?? 0)
        }
    }
}
