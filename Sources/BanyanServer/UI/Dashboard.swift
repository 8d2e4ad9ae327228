import EventLog
import Foundation
import Hummingbird
import NIOCore

/// The web dashboard at `/ui/` (docs/DASHBOARD.md): plain HTML, CSS and JavaScript modules
/// compiled into the binary, so `banyan serve` serves it with no files beside it and no build step.
/// The pages are one document that routes in the browser; every page path answers that document,
/// so a page can be linked, bookmarked and reloaded. Nothing here reads the store: the pages call
/// the same API as any client, with the visitor's token, so the dashboard can show no more than
/// the token's role may read.
enum Dashboard {
    struct Asset: Sendable {
        let name: String
        let contentType: String
        let bytes: [UInt8]
        /// A strong validator: the CRC-32C of the bytes, so a browser revalidates with one small
        /// request and gets `304` until the binary changes.
        let etag: String

        init(_ name: String, _ contentType: String, _ bytes: [UInt8]) {
            self.name = name
            self.contentType = contentType
            self.bytes = bytes
            etag = "\"\(String(CRC32C.checksum(bytes), radix: 16))-\(bytes.count)\""
        }
    }

    /// Every file of `UI/Assets` (a test checks the two lists agree).
    static let assets: [String: Asset] = Dictionary(
        uniqueKeysWithValues: [
            Asset("index.html", "text/html; charset=utf-8", PackageResources.index_html),
            Asset("style.css", "text/css; charset=utf-8", PackageResources.style_css),
            Asset("app.js", javaScript, PackageResources.app_js),
            Asset("api.js", javaScript, PackageResources.api_js),
            Asset("sse.js", javaScript, PackageResources.sse_js),
            Asset("dom.js", javaScript, PackageResources.dom_js),
            Asset("overview.js", javaScript, PackageResources.overview_js),
            Asset("tail.js", javaScript, PackageResources.tail_js),
            Asset("event.js", javaScript, PackageResources.event_js),
            Asset("graph.js", javaScript, PackageResources.graph_js),
            Asset("query.js", javaScript, PackageResources.query_js),
            Asset("runs.js", javaScript, PackageResources.runs_js),
            Asset("maintenance.js", javaScript, PackageResources.maintenance_js),
        ].map { ($0.name, $0) })

    private static let javaScript = "text/javascript; charset=utf-8"

    /// The page paths; each answers `index.html`, whose script draws the page the path names.
    static let pages = [
        "/ui", "/ui/", "/ui/tail", "/ui/query", "/ui/events/{id}", "/ui/events/by-key/{key}", "/ui/runs", "/ui/runs/{id}",
        "/ui/maintenance",
    ]

    /// The pages load only what the binary holds and talk only to this server.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    /// Open to everyone, like `/healthz`: the files hold no data. The API calls the pages make
    /// need the roles they always need.
    static var routes: [Route] {
        let index = assets["index.html"]!
        return pages.map { pattern in
            Route(.get, pattern, role: nil) { request, _ in serve(index, request) }
        } + [
            Route(.get, "/ui/assets/{name}", role: nil) { request, context in
                guard let asset = assets[String(context.parameter)], asset.name != "index.html" else {
                    throw APIError(.notFound, "not found", detail: "the dashboard has no file \"\(context.parameter)\"").naming("name")
                }
                return serve(asset, request)
            }
        ]
    }

    /// `BANYAN_UI_DIR`: serve the files from this directory instead, read on every request, so
    /// the pages can be edited without rebuilding (development only; docs/DASHBOARD.md).
    static let developmentDirectory = ProcessInfo.processInfo.environment["BANYAN_UI_DIR"].map { URL(fileURLWithPath: $0) }

    static func serve(_ asset: Asset, _ request: Request) -> Response {
        if let directory = developmentDirectory, let data = try? Data(contentsOf: directory.appendingPathComponent(asset.name)) {
            return respond(Asset(asset.name, asset.contentType, [UInt8](data)), request)
        }
        return respond(asset, request)
    }

    private static func respond(_ asset: Asset, _ request: Request) -> Response {
        var headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache",
            .contentSecurityPolicy: contentSecurityPolicy, .xContentTypeOptions: "nosniff",
        ]
        // RFC 9110 13.1.2: `*` matches any current file, and the comparison is weak (a `W/` prefix is ignored).
        if let tags = request.headers[.ifNoneMatch],
            tags.split(separator: ",").contains(where: { tag in
                let tag = tag.trimmingCharacters(in: .whitespaces)
                return tag == "*" || (tag.hasPrefix("W/") ? String(tag.dropFirst(2)) : tag) == asset.etag
            })
        {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentLength] = String(asset.bytes.count)
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }
}
