import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One frame of `GET /v1/stream` (docs/HTTP_API.md): `event` is `event` for an event (its JSON
/// in `data`), `truncated` or `pruned` for the server's notices.
public struct StreamFrame: Sendable, Hashable {
    public var id: UInt64?
    public var event: String
    public var data: [UInt8]
}

extension BanyanHTTPClient {
    /// `GET /v1/stream` as frames, in order. A dropped connection is opened again with
    /// `Last-Event-ID` (the last id received), so no event is missed or repeated, after a pause
    /// of `reconnectPause` doubling to 2 s; after `reconnectsMax` failures in a row without a
    /// frame between them the stream ends with the last error. A 4xx answer ends it at once. Frames over `frameBytesMax` end it too (the
    /// server's events are bounded far below). Stops when the consumer stops iterating.
    public func stream(
        after: UInt64?, stream: String? = nil, type: String? = nil, reconnectPause: Duration = .milliseconds(200), reconnectsMax: Int = 10,
        frameBytesMax: Int = 16 << 20
    ) -> AsyncThrowingStream<StreamFrame, any Error> {
        var query: [String] = []
        if let stream { query.append("stream=" + (stream.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? stream)) }
        if let type { query.append("type=" + (type.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? type)) }
        return frames(path: "/v1/stream", query: query, after: after, reconnectPause: reconnectPause, reconnectsMax: reconnectsMax, frameBytesMax: frameBytesMax)
    }

    /// The frames of any SSE route of the server (`/v1/stream`, `/v1/runs/{id}/watch`), with the
    /// same reconnection as `stream`: `after` goes in the query (as `after=`) once an id is known.
    public func frames(
        path: String, query: [String] = [], after: UInt64?, reconnectPause: Duration = .milliseconds(200), reconnectsMax: Int = 10,
        frameBytesMax: Int = 16 << 20
    ) -> AsyncThrowingStream<StreamFrame, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                var last = after
                var failures = 0
                var pause = reconnectPause
                while !Task.isCancelled {
                    let parts = query + (last.map { ["after=\($0)"] } ?? [])
                    var request = HTTPClientRequest(url: baseURL + path + (parts.isEmpty ? "" : "?" + parts.joined(separator: "&")))
                    request.headers.add(name: "Accept", value: "text/event-stream")
                    if let last { request.headers.add(name: "Last-Event-ID", value: String(last)) }
                    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    do {
                        let response = try await HTTPClient.shared.execute(request, deadline: .distantFuture)
                        guard response.status == .ok else {
                            let body = Array((try? await response.body.collect(upTo: 64 << 10))?.readableBytesView ?? ByteBuffer().readableBytesView)
                            let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(body))
                            let error = BanyanClientError(status: Int(response.status.code), error: decoded?.error ?? "HTTP \(response.status.code)", detail: decoded?.detail)
                            if (400..<500).contains(Int(response.status.code)) { throw StreamEnd.refused(error) }
                            throw error
                        }
                        var parser = SSEParser(frameBytesMax: frameBytesMax)
                        for try await chunk in response.body {
                            for frame in try parser.feed(chunk.readableBytesView) {
                                if let id = frame.id { last = id }
                                failures = 0
                                pause = reconnectPause
                                continuation.yield(frame)
                            }
                        }
                        // The server closed the stream (a restart, a shutdown): open it again.
                    } catch StreamEnd.refused(let error) {
                        continuation.finish(throwing: error)
                        return
                    } catch is CancellationError {
                        break
                    } catch let error as SSEParser.TooLarge {
                        continuation.finish(throwing: error)
                        return
                    } catch {
                        failures += 1
                        if failures > reconnectsMax {
                            continuation.finish(throwing: BanyanClientError(status: 0, error: "cannot reach \(baseURL)", detail: "\(error)"))
                            return
                        }
                    }
                    try? await Task.sleep(for: pause)
                    pause = min(pause * 2, .seconds(2))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private enum StreamEnd: Error {
        case refused(BanyanClientError)
    }
}

/// Server-sent events, line by line (the `id`, `event` and `data` fields; comments and other
/// fields are skipped): bytes in, complete frames out.
struct SSEParser {
    struct TooLarge: Error, CustomStringConvertible {
        var description: String { "a stream frame over the size limit" }
    }

    let frameBytesMax: Int
    private var line: [UInt8] = []
    private var id: UInt64?
    private var event = ""
    private var data: [UInt8] = []
    private var hasData = false

    init(frameBytesMax: Int) {
        self.frameBytesMax = frameBytesMax
    }

    mutating func feed<C: Collection>(_ bytes: C) throws -> [StreamFrame] where C.Element == UInt8 {
        var frames: [StreamFrame] = []
        for byte in bytes {
            guard byte == 0x0A else {
                line.append(byte)
                if line.count + data.count > frameBytesMax { throw TooLarge() }
                continue
            }
            if line.last == 0x0D { line.removeLast() }
            if line.isEmpty {
                if hasData || id != nil { frames.append(StreamFrame(id: id, event: event.isEmpty ? "message" : event, data: data)) }
                id = nil
                event = ""
                data = []
                hasData = false
            } else if line.first != 0x3A {  // ":" starts a comment (the heartbeat)
                let colon = line.firstIndex(of: 0x3A) ?? line.endIndex
                let field = String(decoding: line[..<colon], as: UTF8.self)
                var value = colon < line.endIndex ? Array(line[line.index(after: colon)...]) : []
                if value.first == 0x20 { value.removeFirst() }
                switch field {
                case "id": id = UInt64(String(decoding: value, as: UTF8.self))
                case "event": event = String(decoding: value, as: UTF8.self)
                case "data":
                    if hasData { data.append(0x0A) }
                    data += value
                    hasData = true
                default: break
                }
            }
            line = []
        }
        return frames
    }
}
