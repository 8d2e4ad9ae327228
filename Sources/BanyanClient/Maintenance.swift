import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Maintenance requests (admin role; docs/HTTP_API.md, "Maintenance").
extension BanyanHTTPClient {
    /// `POST /v1/admin/snapshots`: the server takes a snapshot and answers when it is written
    /// (so this waits up to `timeout`); its JSON answer.
    /// With `prune`, the server then prunes its store below the snapshot.
    public func createSnapshot(prune: Bool = false, timeout: TimeAmount = .hours(2)) async throws -> [UInt8] {
        var client = self
        client.timeout = timeout
        let body: [UInt8]? = prune ? Array(#"{"prune":true}"#.utf8) : nil
        return try await client.exchange(
            path: "/v1/admin/snapshots", method: .POST, headers: prune ? ["Content-Type": "application/json"] : [:], body: body).body
    }

    /// `POST /v1/admin/compactions` with `body` (`{"before": ID}` or `{"older_than": "30d"}`,
    /// optionally `stream` and `type`); answers when the leader has carried it out.
    public func compact(_ body: [UInt8], timeout: TimeAmount = .hours(6)) async throws -> [UInt8] {
        var client = self
        client.timeout = timeout
        return try await client.exchange(path: "/v1/admin/compactions", method: .POST, headers: ["Content-Type": "application/json"], body: body).body
    }

    /// `GET /v1/admin/snapshots`, as JSON text.
    public func snapshots() async throws -> [UInt8] {
        try await exchange(path: "/v1/admin/snapshots", method: .GET, headers: [:], body: nil).body
    }

    /// `GET /v1/admin/jobs`, as JSON text.
    public func jobs() async throws -> [UInt8] {
        try await exchange(path: "/v1/admin/jobs", method: .GET, headers: [:], body: nil).body
    }

    /// Downloads the archive `name` to `path` (which must not exist): written to a partial file
    /// beside it, fsynced, then renamed, so `path` never holds part of an archive. Returns its size.
    public func downloadSnapshot(_ name: String, to path: String, timeout: TimeAmount = .hours(2), progress: ((UInt64) -> Void)? = nil) async throws -> UInt64 {
        let escaped = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? name
        return try await download("/v1/admin/snapshots/" + escaped, to: path, timeout: timeout, progress: progress).bytes
    }

    /// Downloads the leader's newest archive (`Replication.snapshotPath`, the write role a
    /// follower has) to `path`, like `downloadSnapshot`; returns its name and size.
    public func downloadLatestSnapshot(to path: String, timeout: TimeAmount = .hours(2), progress: ((UInt64) -> Void)? = nil) async throws -> (name: String, bytes: UInt64) {
        let (bytes, headers) = try await download(Replication.snapshotPath, to: path, timeout: timeout, progress: progress)
        return (headers.first(name: Replication.Header.snapshotName) ?? "?", bytes)
    }

    private func download(_ urlPath: String, to path: String, timeout: TimeAmount, progress: ((UInt64) -> Void)?) async throws -> (bytes: UInt64, headers: HTTPHeaders) {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw BanyanClientError(status: 0, error: "\(path) already exists", detail: "a download never overwrites a file")
        }
        var request = HTTPClientRequest(url: baseURL + urlPath)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout)
        } catch {
            throw BanyanClientError(status: 0, error: "cannot reach \(baseURL)", detail: "\(error)")
        }
        guard response.status == .ok else {
            let bytes = Array((try await response.body.collect(upTo: 1 << 20)).readableBytesView)
            let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(bytes))
            throw BanyanClientError(status: Int(response.status.code), error: decoded?.error ?? "HTTP \(response.status.code)", detail: decoded?.detail)
        }
        let partial = path + ".partial-\(getpid())"
        guard FileManager.default.createFile(atPath: partial, contents: nil), let handle = FileHandle(forWritingAtPath: partial) else {
            throw BanyanClientError(status: 0, error: "cannot create \(partial)", detail: String(cString: strerror(errno)))
        }
        var written: UInt64 = 0
        do {
            for try await buffer in response.body {
                try handle.write(contentsOf: Data(buffer.readableBytesView))
                written += UInt64(buffer.readableBytes)
                progress?(written)
            }
            try handle.synchronize()
            try handle.close()
            if let expected = response.headers.first(name: "Content-Length").flatMap(UInt64.init), expected != written {
                throw BanyanClientError(status: 0, error: "the download ended early", detail: "\(written) of \(expected) bytes")
            }
            guard rename(partial, path) == 0 else {
                throw BanyanClientError(status: 0, error: "cannot move the download to \(path)", detail: String(cString: strerror(errno)))
            }
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        return (written, response.headers)
    }
}
