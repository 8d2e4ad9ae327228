import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import Synchronization

/// A request to become a WebSocket (docs/HTTP_API.md, "WebSocket"). It goes through the same
/// dispatch as any request (the Host and Origin checks, tokens, the route's role), then a route
/// that speaks WebSocket (`Route(webSocket: true)`) hands its session to `accept` instead of
/// answering. Any other answer still upgrades, so that a browser, which cannot read a refused
/// handshake, learns why: one text message `{"event": "error", "status": S, "data": <the JSON
/// error body>}`, then close code 4000 + S.
public final class WebSocketUpgrade: Sendable {
    public typealias Session = @Sendable (WebSocketInboundStream, WebSocketOutboundWriter) async throws -> Void

    /// The subprotocol by which a client says it reads Banyan's frames; the server selects it when
    /// offered. A browser cannot set `Authorization` on a WebSocket, so it offers its token beside
    /// it as `banyan.bearer.<token>` (never selected, so never echoed).
    public static let subprotocol = "banyan.v1"
    public static let bearerPrefix = "banyan.bearer."
    /// Clients have nothing to send but close and ping frames; a larger frame closes the session.
    public static let inboundFrameBytesMax = 16 << 10
    /// An open socket is pinged this often (a client gone without closing is noticed).
    public static let pingInterval: Duration = .seconds(30)
    /// How long a close waits for the client's close frame before the connection is dropped.
    public static let closeTimeout: Duration = .seconds(15)

    private let session = Mutex<Session?>(nil)

    /// Takes over the connection once the upgrade is answered; the session ends the connection.
    public func accept(_ session: @escaping Session) -> Response {
        self.session.withLock { $0 = session }
        return Response(status: .ok)
    }

    /// The upgrading HTTP/1.1 channel of one connection, reporting to its guard: the handshake is a
    /// whole request (a GET without a body) and the session is its response, which no timeout cuts.
    static func channel(
        responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration, routes: BanyanResponder, connection: ConnectionGuard
    ) -> HTTP1WebSocketUpgradeChannel {
        HTTP1WebSocketUpgradeChannel(
            responder: responder,
            configuration: .init(
                http1: http1, ws: .init(maxFrameSize: inboundFrameBytesMax, autoPing: .enabled(timePeriod: pingInterval), closeTimeout: closeTimeout))
        ) { head, channel, logger in
            connection.headReceived()
            connection.endReceived()
            var head = head
            let offered = head.headerFields[values: .secWebSocketProtocol].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            if head.headerFields[.authorization] == nil, let token = offered.first(where: { $0.hasPrefix(bearerPrefix) }) {
                head.headerFields[.authorization] = "Bearer \(token.dropFirst(bearerPrefix.count))"
            }
            let upgrade = WebSocketUpgrade()
            var context = BanyanRequestContext(source: .init(channel: channel, logger: logger))
            context.webSocket = upgrade
            // `respond` turns every error into its answer.
            var response = try await routes.respond(to: Request(head: head, body: .init(buffer: ByteBuffer())), context: context)
            let headers: HTTPFields = offered.contains(subprotocol) ? [.secWebSocketProtocol: subprotocol] : [:]
            if let session = upgrade.session.withLock({ $0 }), response.status == .ok {
                return .upgrade(headers) { inbound, outbound, _ in
                    defer { connection.responseEnded() }
                    try await session(inbound, outbound)
                }
            }
            if response.status.code < 400 {
                // HEAD, OPTIONS, or a route that answered without a session.
                response = APIError.invalid("a WebSocket is opened with GET on a route that speaks it", field: "Upgrade").makeResponse()
            }
            let status = response.status
            let body = (try? await Collected.bytes(of: response)) ?? []
            return .upgrade(headers) { _, outbound, _ in
                defer { connection.responseEnded() }
                let data = body.isEmpty ? "null" : String(decoding: body, as: UTF8.self)
                try await outbound.write(.text(#"{"event":"error","status":\#(status.code),"data":\#(data)}"#))
                try await outbound.close(.unknown(UInt16(4000 + status.code)), reason: status.reasonPhrase)
            }
        }
    }

    /// A response's body (an error's JSON), read up to `bytesMax`.
    private final class Collected: ResponseBodyWriter {
        static let bytesMax = 64 << 10
        var bytes: [UInt8] = []
        func write(_ buffer: ByteBuffer) async throws {
            guard bytes.count + buffer.readableBytes <= Self.bytesMax else { throw APIError(.internalServerError, "error body too large") }
            bytes += buffer.readableBytesView
        }
        func finish(_ trailingHeaders: HTTPFields?) async throws {}

        static func bytes(of response: Response) async throws -> [UInt8] {
            let collected = Collected()
            try await response.body.write(collected)
            return collected.bytes
        }
    }
}
