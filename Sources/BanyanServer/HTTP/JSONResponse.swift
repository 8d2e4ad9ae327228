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
        // One copy, into the buffer that is sent: appending the newline to `bytes` would copy
        // them first (the caller still holds them), and a lineage tree runs to megabytes.
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return Response(
            status: status,
            headers: [.contentType: contentType, .contentLength: String(buffer.readableBytes)],
            body: ResponseBody(byteBuffer: buffer))
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
