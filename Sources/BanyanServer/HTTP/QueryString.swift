import Foundation
import Hummingbird

/// Query parameters decoded as browsers, Go and Python's `requests` encode them
/// (application/x-www-form-urlencoded): `+` is a space, then percent-decoding.
/// The first occurrence of a name wins. A value that does not decode to UTF-8 is a 400 naming
/// the parameter, never silently dropped (a dropped filter would widen the answer).
public struct QueryString: Sendable {
    private var values: [String: String] = [:]

    public init(_ request: Request) throws {
        try self.init(query: request.uri.query?[...])
    }

    /// `query`: the request target's part after `?` (also read on the event loop: `FastTree`).
    init(query: Substring?) throws {
        guard let query, !query.isEmpty else { return }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]) else {
                throw APIError.invalid("a query parameter name is not valid percent-encoded UTF-8", field: "query")
            }
            guard let value = parts.count > 1 ? Self.decode(parts[1]) : "" else {
                throw APIError.invalid("the value of \(name) is not valid percent-encoded UTF-8", field: name)
            }
            if values[name] == nil { values[name] = value }
        }
    }

    public func get(_ name: String) -> String? { values[name] }

    /// A boolean parameter: `true` or `false` (absent: false).
    public func flag(_ name: String) throws -> Bool {
        switch values[name] {
        case nil, "false": return false
        case "true": return true
        case let other?: throw APIError.invalid("\(name) must be true or false, not \"\(other.prefix(32))\"", field: name)
        }
    }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
