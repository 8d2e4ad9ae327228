import EventLog
import Hummingbird
import NIOCore

/// JSON responses as CelestialTree writes them: `application/json; charset=utf-8`, body ending in "\n".
public enum JSONResponse {
    static let contentType = "application/json; charset=utf-8"

    static func make(_ writer: JSONWriter, status: HTTPResponse.Status = .ok) -> Response {
        make(json: writer.bytes, status: status)
    }

    /// `bytes`: one JSON value.
    public static func make(json bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        let (headers, body) = framed(json: bytes)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
    }

    /// The body of a JSON answer (`bytes` and the newline) and the headers it has (also written
    /// on the event loop: `FastEmit`).
    static func framed(json bytes: [UInt8], allocator: ByteBufferAllocator = ByteBufferAllocator()) -> (headers: HTTPFields, body: ByteBuffer) {
        // One copy, into the buffer that is sent: appending the newline to `bytes` would copy
        // them first (the caller still holds them), and a lineage tree runs to megabytes.
        var buffer = allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return ([.contentType: contentType, .contentLength: String(buffer.readableBytes)], buffer)
    }

    static func make(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var w = JSONWriter()
        w.write(value)
        return make(w, status: status)
    }

    static func ids(_ ids: [EventID]) -> Response {
        var w = JSONWriter(capacity: 2 + ids.count * 8)
        w.writeIDs(ids)
        return make(w)
    }

    /// Go's `http.NotFound` body for paths no route serves.
    static func pageNotFound() -> Response {
        let body = "404 page not found\n"
        return Response(
            status: .notFound,
            headers: [.contentType: "text/plain; charset=utf-8", .contentLength: String(body.utf8.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
