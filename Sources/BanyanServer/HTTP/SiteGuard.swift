import Hummingbird

/// What keeps web pages the operator happens to open away from a server that, on loopback, may
/// run without tokens (docs/HTTP_API.md, "Browsers"):
///
/// - **Host**: a request must name this server: its listen address, a loopback name when it listens
///   on loopback, or a name in `--allowed-hosts`. A DNS-rebinding page reaches 127.0.0.1 under its
///   own name (`Host: evil.example`) and is refused. Only the name counts, not the port. A server
///   listening on every address (`0.0.0.0`, `::`) accepts any name unless `--allowed-hosts` is set;
///   it requires tokens anyway.
/// - **Origin**: a browser request from another origin that could change something (any method
///   but GET, HEAD and OPTIONS), or that opens a WebSocket (which CORS does not cover: the page
///   could read it), is refused unless `--cors-origins` lists the origin; allowed
///   origins get CORS headers and preflight answers. Requests without `Origin` (curl, the
///   `celestialtree` client, servers) are not browser requests and pass.
/// - Bodies must be JSON (`RequestBody.requireJSON`), which an HTML form cannot send.
struct SiteGuard: Sendable {
    /// Lower-cased host names a request may name; nil: any.
    let allowedHosts: Set<String>?
    /// The same as UTF-8, for the per-request check, which compares bytes without allocating.
    private let allowedHostBytes: [[UInt8]]
    /// Lower-cased origins (`scheme://host[:port]`) allowed to make cross-origin requests; `*` allows any.
    let corsOrigins: Set<String>

    static let loopbackNames: Set<String> = ["localhost", "127.0.0.1", "::1"]
    static let wildcardHosts: Set<String> = ["0.0.0.0", "::", ""]
    static let allowedMethods = "GET, HEAD, POST, DELETE, OPTIONS"
    static let allowedHeaders = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"

    init(config: ServerConfiguration) {
        let configured = Set(config.allowedHosts.map { Self.hostName($0) })
        let listen = Self.hostName(config.host)
        if configured.contains("*") || (configured.isEmpty && Self.wildcardHosts.contains(listen)) {
            allowedHosts = nil
        } else {
            var hosts = configured
            if !Self.wildcardHosts.contains(listen) { hosts.insert(listen) }
            if config.isLoopback || Self.wildcardHosts.contains(listen) { hosts.formUnion(Self.loopbackNames) }
            allowedHosts = hosts
        }
        corsOrigins = Set(config.corsOrigins.map { $0.lowercased().trimmingSuffix("/") })
        allowedHostBytes = allowedHosts.map { $0.map { Array($0.utf8) } } ?? []
    }

    /// Whether the host name in `authority` (`name`, `name:port`, `[v6]`, `[v6]:port`) is one of
    /// `allowedHostBytes`, compared as ASCII without regard to case.
    private func allows(authority: String) -> Bool {
        var authority = authority
        return authority.withUTF8 { bytes in
            var start = 0
            var end = bytes.count
            if bytes.first == UInt8(ascii: "[") {
                start = 1
                end = bytes.firstIndex(of: UInt8(ascii: "]")) ?? bytes.count
            } else if let colon = bytes.lastIndex(of: UInt8(ascii: ":")), bytes.firstIndex(of: UInt8(ascii: ":")) == colon {
                end = colon
            }
            let name = UnsafeBufferPointer(rebasing: bytes[start..<end])
            return allowedHostBytes.contains { allowed in
                allowed.count == name.count && zip(allowed, name).allSatisfy { a, b in a == (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) }
            }
        }
    }

    /// The host name of a `Host` value or a listen address: lower-cased, without port or brackets.
    static func hostName(_ authority: String) -> String {
        var text = Substring(authority.lowercased())
        if text.hasPrefix("[") {
            // [::1]:7777
            let end = text.firstIndex(of: "]") ?? text.endIndex
            return String(text[text.index(after: text.startIndex)..<end])
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.lastIndex(of: ":") {
            text = text[..<colon]
        }
        return String(text)
    }

    /// Refuses a request for another host, or a cross-origin request that could change something.
    /// `webSocket`: the request is a WebSocket handshake.
    func check(_ request: Request, webSocket: Bool = false) throws(APIError) {
        try check(request.head, webSocket: webSocket)
    }

    func check(_ request: HTTPRequest, webSocket: Bool = false) throws(APIError) {
        if allowedHosts != nil, let authority = request.authority, !allows(authority: authority) {
            throw APIError(
                .forbidden, "host not allowed",
                detail: "this server does not answer for \"\(Self.hostName(authority))\"; name it in --allowed-hosts if it is one of its names"
            ).naming("Host")
        }
        guard let origin = request.headerFields[.origin], !isSameOrigin(origin, request) else { return }
        // A WebSocket is not under CORS: a page from anywhere could read what it carries.
        switch request.method {
        case .get where !webSocket, .head, .options: return
        default:
            guard isAllowed(origin) else {
                throw APIError(
                    .forbidden, "cross-origin request refused",
                    detail: "requests from \(origin) may not \(webSocket ? "open a WebSocket" : "change anything") here; list the origin in --cors-origins to allow it"
                ).naming("Origin")
            }
        }
    }

    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 with the CORS headers
    /// for an allowed origin, 403 otherwise; nil for any other request.
    func preflight(_ request: Request) -> Response? {
        guard request.method == .options, let origin = request.headers[.origin],
              request.headers[.accessControlRequestMethod] != nil
        else { return nil }
        guard isAllowed(origin) || isSameOrigin(origin, request.head) else {
            return APIError(.forbidden, "cross-origin request refused", detail: "\(origin) is not in --cors-origins").naming("Origin").makeResponse()
        }
        var response = Response(status: .noContent)
        addCORSHeaders(origin, to: &response.headers)
        response.headers[.accessControlAllowMethods] = Self.allowedMethods
        response.headers[.accessControlAllowHeaders] = Self.allowedHeaders
        response.headers[.accessControlMaxAge] = "600"
        return response
    }

    /// CORS headers on the answer to an allowed cross-origin request.
    func decorate(_ response: inout Response, for request: Request) {
        decorate(&response.headers, for: request.head)
    }

    func decorate(_ headers: inout HTTPFields, for request: HTTPRequest) {
        guard !corsOrigins.isEmpty, let origin = request.headerFields[.origin], isAllowed(origin), !isSameOrigin(origin, request) else { return }
        addCORSHeaders(origin, to: &headers)
    }

    private func addCORSHeaders(_ origin: String, to headers: inout HTTPFields) {
        headers[.accessControlAllowOrigin] = origin
        headers[.vary] = "Origin"
    }

    private func isAllowed(_ origin: String) -> Bool {
        corsOrigins.contains("*") || corsOrigins.contains(origin.lowercased().trimmingSuffix("/"))
    }

    /// Same origin: the `Origin` names the host the request was sent to (any scheme, since a
    /// proxy may terminate TLS in front of the server).
    private func isSameOrigin(_ origin: String, _ request: HTTPRequest) -> Bool {
        guard let authority = request.authority?.lowercased() else { return false }
        let text = origin.lowercased()
        guard let schemeEnd = text.range(of: "://") else { return false }
        return text[schemeEnd.upperBound...] == authority
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
