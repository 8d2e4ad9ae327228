import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BanyanServer

/// The dashboard's files as the server serves them (docs/DASHBOARD.md); what the pages do is
/// checked in a real browser (Tests/integration/test_dashboard.py).
struct DashboardRouteTests {
    static let assetsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/BanyanServer/UI/Assets")

    /// The server's list and the directory agree, byte for byte: a file added to the directory
    /// but not to `Dashboard.assets` would be compiled in and never served.
    @Test func everyFileOfTheDirectoryIsServedAsItIs() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.assetsDirectory.path).filter { !$0.hasPrefix(".") }
        #expect(Set(names) == Set(Dashboard.assets.keys))
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: Self.assetsDirectory.appendingPathComponent(name)))
            #expect(Dashboard.assets[name]?.bytes == bytes, "\(name)")
        }
    }

    /// Every file the pages load (the document's links, the modules' imports) is one the server has.
    @Test func everyReferenceNamesAnAsset() throws {
        let index = String(decoding: try #require(Dashboard.assets["index.html"]).bytes, as: UTF8.self)
        var referenced = Set(index.matches(of: /\/ui\/assets\/([a-z]+\.[a-z]+)/).map { String($0.1) })
        for (name, asset) in Dashboard.assets where name.hasSuffix(".js") {
            let text = String(decoding: asset.bytes, as: UTF8.self)
            referenced.formUnion(text.matches(of: /import\s*(?:\([^'"]*|[^'"]*from\s*)['"]\.\/([a-z]+\.js)['"]/).map { String($0.1) })
        }
        #expect(referenced.contains("app.js") && referenced.contains("graph.js"))
        #expect(referenced.subtracting(Dashboard.assets.keys).isEmpty, "\(referenced.subtracting(Dashboard.assets.keys))")
    }

    /// The issue's budget for everything the dashboard ships.
    @Test func theAssetsStaySmall() {
        let total = Dashboard.assets.values.reduce(0) { $0 + $1.bytes.count }
        #expect(total < 200_000, "dashboard assets are \(total) bytes")
    }

    @Test func pagesAnswerTheDocumentAndAssetsRevalidate() async throws {
        try await CelestialTreeRoutesTests.withBanyanServer { _, client in
            let index = try #require(Dashboard.assets["index.html"])
            for path in ["/ui", "/ui/", "/ui/tail", "/ui/query?q=ancestors(1)", "/ui/events/12", "/ui/events/by-key/abc%2Fdef", "/ui/runs", "/ui/runs/r-1", "/ui/maintenance"] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .ok, "\(path)")
                #expect(Array(buffer: response.body) == index.bytes, "\(path)")
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                #expect(response.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
            }

            let script = try await client.execute(uri: "/ui/assets/graph.js", method: .get)
            #expect(script.status == .ok)
            #expect(script.headers[.contentType] == "text/javascript; charset=utf-8")
            let etag = try #require(script.headers[.eTag])
            #expect(script.headers[.cacheControl] == "no-cache")
            let again = try await client.execute(uri: "/ui/assets/graph.js", method: .get, headers: [.ifNoneMatch: "\"other\", \(etag)"])
            #expect(again.status == .notModified)
            #expect(again.body.readableBytes == 0)
            for tags in ["W/\(etag)", "*"] {
                #expect(try await client.execute(uri: "/ui/assets/graph.js", method: .get, headers: [.ifNoneMatch: tags]).status == .notModified, "\(tags)")
            }
            let stale = try await client.execute(uri: "/ui/assets/graph.js", method: .get, headers: [.ifNoneMatch: "\"0-1\""])
            #expect(stale.status == .ok)
            #expect(Array(buffer: stale.body) == Dashboard.assets["graph.js"]?.bytes)

            // The document is a page, not an asset; unknown names are a JSON 404 naming the field.
            for missing in ["/ui/assets/index.html", "/ui/assets/nope.js", "/ui/assets/..%2Fapp.js"] {
                let response = try await client.execute(uri: missing, method: .get)
                #expect(response.status == .notFound, "\(missing)")
                let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(body?["field"] as? String == "name", "\(missing)")
            }
            #expect(try await client.execute(uri: "/ui/nothing-here", method: .get).status == .notFound)
        }
    }
}
