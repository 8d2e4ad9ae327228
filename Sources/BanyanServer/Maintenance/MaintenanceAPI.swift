import EventLog
import Foundation
import Hummingbird
import NIOCore

/// Maintenance over HTTP (admin role; docs/HTTP_API.md, "Maintenance"):
/// - `POST /v1/admin/snapshots`: take a snapshot now (201), 409 while another job runs;
/// - `GET /v1/admin/snapshots`: the archives in the snapshot directory, newest first;
/// - `GET /v1/admin/snapshots/{name}`: download one (`application/zstd`);
/// - `GET /v1/admin/jobs`: the running job with its progress, and the recent outcomes.
struct MaintenanceAPI: Sendable {
    let snapshots: Snapshots
    let jobs: MaintenanceJobs
    let access: AccessControl

    static let downloadChunkBytes = 1 << 20

    var routes: [Route] {
        [
            Route(.post, "/v1/admin/snapshots", role: .admin) { request, _ in try await create(request) },
            Route(.get, "/v1/admin/snapshots", role: .admin) { _, _ in
                JSONResponse.make(.members(["snapshot_dir": .string(snapshots.directory), "keep": .int(snapshots.keep), "snapshots": .array(snapshots.list())]))
            },
            Route(.get, "/v1/admin/snapshots/{name}", role: .admin) { _, context in try download(String(context.parameter)) },
            Route(.get, "/v1/admin/jobs", role: .admin) { _, _ in JSONResponse.make(jobs.json()) },
        ]
    }

    private func create(_ request: Request) async throws -> Response {
        do {
            return JSONResponse.make(try await snapshots.create(requestedBy: access.identity(request)), status: .created)
        } catch let busy as MaintenanceJobs.Busy {
            throw Self.busy(busy)
        }
    }

    static func busy(_ busy: MaintenanceJobs.Busy) -> APIError {
        var error = APIError(.conflict, "job running", detail: "maintenance job \(busy.running.id) (\(busy.running.kind)) is running; one runs at a time")
        error.members = [("job", busy.running.json())]
        return error
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
