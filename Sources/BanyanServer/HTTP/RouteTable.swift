import EventLog
import Hummingbird

/// One route: a path pattern (`/v1/events/{id}`: literal segments and `{parameters}`), the method
/// it answers (nil: any), the role it needs when tokens are configured (nil: open to everyone),
/// whether it speaks WebSocket (`WebSocketUpgrade`), and its handler.
public struct Route: Sendable {
    public typealias Handler = @Sendable (Request, RouteContext) async throws -> Response

    let pattern: String
    let method: HTTPRequest.Method?
    let role: Role?
    let handler: Handler
    let webSocket: Bool
    fileprivate let segments: [Substring]

    public init(_ method: HTTPRequest.Method?, _ pattern: String, role: Role?, webSocket: Bool = false, _ handler: @escaping Handler) {
        self.pattern = pattern
        self.method = method
        self.role = role
        self.webSocket = webSocket
        self.handler = handler
        segments = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { $0 }
    }

    /// The path's values for the pattern's parameters, in order; nil if the path does not fit.
    fileprivate func parameters(_ parts: ArraySlice<Substring>) -> [Substring]? {
        guard parts.count == segments.count else { return nil }
        var values: [Substring] = []
        for (segment, part) in zip(segments, parts) {
            if segment.first == "{" {
                values.append(part)
            } else if segment != part {
                return nil
            }
        }
        return values
    }
}

/// What a handler gets besides the request.
public struct RouteContext: Sendable {
    /// The values of the pattern's `{parameters}`, in order.
    public let parameters: [Substring]
    /// The connection, for routes that outlive the request (SSE).
    public let client: ClientConnection
    /// The request was HEAD, answered as GET without a body: a stream must not be opened.
    public let headOnly: Bool
    /// Set when the request asks to become a WebSocket and the route speaks it: the handler
    /// answers with `webSocket.accept { … }`.
    public let webSocket: WebSocketUpgrade?

    public var parameter: Substring { parameters.first ?? "" }
}

/// Every route of the server in one table: dispatch, `405` with `Allow`, the role each route
/// needs, and the metric label of each request (its pattern, never the raw path) all come from
/// here. HEAD is answered by the GET route of the same path.
struct RouteTable: Sendable {
    let routes: [Route]

    enum Match {
        case found(Route, [Substring])
        /// The path is served, but not with this method.
        case wrongMethod(pattern: String, allow: [HTTPRequest.Method])
        case none
    }

    func match(path: String, method: HTTPRequest.Method) -> Match {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        var allow: [HTTPRequest.Method] = []
        var pattern: String?
        for route in routes {
            guard let values = route.parameters(parts) else { continue }
            if route.method == nil || route.method == method { return .found(route, values) }
            if let m = route.method, !allow.contains(m) { allow.append(m) }
            pattern = pattern ?? route.pattern
        }
        guard let pattern else { return .none }
        return .wrongMethod(pattern: pattern, allow: allow)
    }

    /// The role a request needs when no route serves it as asked (404, 405): what its method
    /// would need, so that a client without a token learns nothing about the routes.
    static func defaultRole(_ method: HTTPRequest.Method) -> Role {
        switch method {
        case .get, .head, .options: .read
        default: .write
        }
    }
}
