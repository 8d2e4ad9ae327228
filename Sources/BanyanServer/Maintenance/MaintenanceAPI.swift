import BanyanClient
import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Maintenance over HTTP (admin role; docs/HTTP_API.md, "Maintenance"):
/// - `POST /v1/admin/snapshots`: take a snapshot now (201), 409 while another job runs; with
///   `{"prune": true}`, then prune the store below it;
/// - `GET /v1/admin/snapshots`: the archives in the snapshot directory, newest first;
/// - `GET /v1/admin/snapshots/{name}`: download one (`application/zstd`);
/// - `POST /v1/admin/compactions`: drop the payloads and messages below a horizon (201);
/// - `GET /v1/admin/jobs`: the running job with its progress, and the recent outcomes;
/// - `GET /v1/replication/snapshot` (write role, a follower's): the newest archive, for a
///   follower bootstrapping below a leader's pruned prefix.
struct MaintenanceAPI: Sendable {
    let snapshots: Snapshots
    let compactions: Compactions
    let jobs: MaintenanceJobs
    let access: AccessControl
    let limits: Limits

    static let compactionFields: Set<String> = ["before", "older_than", "stream", "type"]
    static let compactionBodyBytesMax = 4_096
    static let snapshotFields: Set<String> = ["prune"]

    static let downloadChunkBytes = 1 << 20

    var routes: [Route] {
        [
            Route(.post, "/v1/admin/snapshots", role: .admin) { request, _ in try await create(request) },
            Route(.get, "/v1/admin/snapshots", role: .admin) { _, _ in
                // Reading each archive's manifest is file I/O: off the executor.
                let listing = try await Blocking.run { [snapshots] in snapshots.list() }
                return JSONResponse.make(.members(["snapshot_dir": .string(snapshots.directory), "keep": .int(snapshots.keep), "snapshots": .array(listing)]))
            },
            Route(.get, "/v1/admin/snapshots/{name}", role: .admin) { _, context in try download(String(context.parameter)) },
            Route(.get, "/v1/admin/jobs", role: .admin) { _, _ in JSONResponse.make(jobs.json()) },
            Route(.post, "/v1/admin/compactions", role: .admin) { request, _ in try await compact(request) },
            Route(.get, Replication.snapshotPath, role: .write) { _, _ in try await latest() },
        ]
    }

    private func create(_ request: Request) async throws -> Response {
        // The body is optional: none (or an empty one) takes a plain snapshot.
        let body = try await RequestBody.bytes(request, bytesMax: Self.compactionBodyBytesMax)
        var prune = false
        if !body.isEmpty {
            _ = try RequestBody.requireJSON(request)
            let object = try RequestBody.object(body, allowed: Self.snapshotFields, depthMax: 2)
            if let value = object["prune"], !value.isNull {
                guard let flag = value.boolValue else { throw APIError.invalid("prune must be true or false", field: "prune") }
                prune = flag
            }
        }
        do {
            return JSONResponse.make(try await snapshots.create(requestedBy: access.identity(request), prune: prune), status: .created)
        } catch let busy as MaintenanceJobs.Busy {
            throw Self.busy(busy)
        }
    }

    private func compact(_ request: Request) async throws -> Response {
        _ = try RequestBody.requireJSON(request)
        let body = try await RequestBody.bytes(request, bytesMax: Self.compactionBodyBytesMax)
        let object = try RequestBody.object(body, allowed: Self.compactionFields, depthMax: 4)
        let wanted = try Self.compactionRequest(object, limits: limits)
        do {
            return JSONResponse.make(try await compactions.create(wanted, requestedBy: access.identity(request)), status: .created)
        } catch let busy as MaintenanceJobs.Busy {
            throw Self.busy(busy)
        }
    }

    /// One horizon (`before`: an id, or `older_than`: a duration such as "30d"), and
    /// optionally a stream and a type.
    static func compactionRequest(_ object: JSONValue, limits: Limits) throws -> Compactions.Request {
        var wanted = Compactions.Request()
        if let value = object["before"], !value.isNull {
            guard let id = value.uint64Value, id >= 2 else { throw APIError.invalid("before must be an event id of at least 2 (events below it are compacted)", field: "before") }
            wanted.before = id
        }
        if let text = try RequestBody.string(object, "older_than") {
            guard let duration = Duration.parse(text) else {
                throw APIError.invalid("older_than must be a duration such as 90s, 12h, 30d or 1h30m (units ms s m h d w), not \"\(text.prefix(64))\"", field: "older_than")
            }
            wanted.olderThan = duration
        }
        guard (wanted.before == nil) != (wanted.olderThan == nil) else {
            throw APIError.invalid("give exactly one horizon: before (an id) or older_than (a duration)", field: wanted.before == nil ? "before" : "older_than")
        }
        wanted.stream = try RequestBody.string(object, "stream")
        wanted.type = try RequestBody.string(object, "type")
        for (name, value) in [("stream", wanted.stream), ("type", wanted.type)] {
            if let value, value.isEmpty || value.utf8.count > limits.typeBytesMax {
                throw APIError.invalid("\(name) must be 1...\(limits.typeBytesMax) bytes", field: name)
            }
        }
        return wanted
    }

    static func busy(_ busy: MaintenanceJobs.Busy) -> APIError {
        var error = APIError(.conflict, "job running", detail: "maintenance job \(busy.running.id) (\(busy.running.kind)) is running; one runs at a time")
        error.members = [("job", busy.running.json())]
        return error
    }

    /// The newest archive: what a follower bootstraps from. 404 when the leader has none that
    /// reaches its first id (a follower could not ship on from it).
    private func latest() async throws -> Response {
        let listing = try await Blocking.run { [snapshots] in SnapshotArchive.list(snapshots.directory) }
        let first = snapshots.store.firstID
        guard let newest = listing.first(where: { ($0.manifest?.snapshotID ?? 0) + 1 >= first }) else {
            throw APIError(
                .notFound, "no snapshot",
                detail: "the snapshot directory holds no archive that reaches this store's first id \(first); take one with POST /v1/admin/snapshots")
        }
        var response = try download(newest.name)
        response.headers[HTTPField.Name.known(Replication.Header.snapshotName)] = newest.name
        return response
    }

    private func download(_ name: String) throws -> Response {
        let path = try snapshots.path(of: name)
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        guard let handle = FileHandle(forReadingAtPath: path) else { throw APIError(.notFound, "not found", detail: "cannot open \(name)").naming("name") }
        let body = ResponseBody(contentLength: size) { writer in
            defer { try? handle.close() }
            while true {
                let chunk = try await Blocking.run { try handle.read(upToCount: Self.downloadChunkBytes) ?? Data() }
                if chunk.isEmpty { break }
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "application/zstd", .contentDisposition: "attachment; filename=\"\(name)\"", .contentLength: String(size)],
            body: body)
    }
}
