import Foundation
import Hummingbird

/// Bearer-token roles. They nest: `read` < `write` < `admin`.
public enum Role: Int, Sendable, Comparable, CaseIterable {
    case read, write, admin

    public init?(name: String) {
        switch name.lowercased() {
        case "read": self = .read
        case "write": self = .write
        case "admin": self = .admin
        default: return nil
        }
    }

    public var name: String { ["read", "write", "admin"][rawValue] }

    public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }
}

/// The configured tokens. Empty means authentication is off (and the server binds to loopback only).
public struct AccessControl: Sendable {
    public private(set) var tokens: [String: Role] = [:]
    /// Names given to tokens (a third column in the tokens file, `token:role:name` in
    /// `BANYAN_TOKENS`), recorded in maintenance events instead of the secret itself.
    public private(set) var names: [String: String] = [:]

    public init(tokens: [String: Role] = [:]) {
        self.tokens = tokens
    }

    public var isEnabled: Bool { !tokens.isEmpty }

    /// Reads `<token> <role> [<name>]` lines (blank lines and `#` comments ignored) and/or a
    /// `token:role[:name],token:role[:name]` list, as from `--tokens-file` and `BANYAN_TOKENS`.
    public static func load(file: String?, environment: String?) throws -> AccessControl {
        var control = AccessControl()
        if let file {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw AccessError("cannot read tokens file \(file): \(error.localizedDescription)")
            }
            for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") { continue }
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard parts.count == 2 || parts.count == 3 else { throw AccessError("\(file):\(number + 1): expected \"<token> <role> [<name>]\"") }
                try control.add(String(parts[0]), String(parts[1]), name: parts.count == 3 ? String(parts[2]) : nil, source: "\(file):\(number + 1)")
            }
        }
        if let environment, !environment.isEmpty {
            for entry in environment.split(separator: ",") {
                let parts = entry.split(separator: ":", maxSplits: 2).map { String($0).trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 || parts.count == 3 else { throw AccessError("BANYAN_TOKENS: expected token:role[:name], found \"\(entry)\"") }
                try control.add(parts[0], parts[1], name: parts.count == 3 ? parts[2] : nil, source: "BANYAN_TOKENS")
            }
        }
        return control
    }

    private mutating func add(_ token: String, _ roleName: String, name: String?, source: String) throws {
        guard !token.isEmpty, token.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw AccessError("\(source): a token must be printable ASCII without spaces")
        }
        guard let role = Role(name: roleName) else { throw AccessError("\(source): unknown role \"\(roleName)\" (read, write, admin)") }
        // A token listed twice is a mistake whichever role wins; with different roles, silently
        // granting one of them is worse.
        if let earlier = tokens[token] {
            throw AccessError("\(source): a token is listed twice (roles \(earlier.name) and \(role.name)); list each token once")
        }
        tokens[token] = role
        if let name {
            guard !name.isEmpty, name.utf8.count <= 64, name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
                throw AccessError("\(source): a token's name must be 1-64 printable ASCII characters without spaces")
            }
            names[token] = name
        }
    }

    /// Who made a request, for the record: the token's name, "unnamed <role> token" for a token
    /// without one, "anonymous" when the server has no tokens. Never the token itself.
    func identity(_ request: Request) -> String {
        guard isEnabled else { return "anonymous" }
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else { return "anonymous" }
        let token = String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        guard let role = tokens[token] else { return "anonymous" }
        return names[token] ?? "unnamed \(role.name) token"
    }

    /// Checks a request against the role its route needs; throws 401/403 as JSON.
    func authorize(_ request: Request, needs role: Role?) throws {
        try authorize(authorization: request.headers[.authorization], needs: role)
    }

    /// The same check on an `Authorization` value from elsewhere (gRPC metadata).
    package func authorize(authorization: String?, needs role: Role?) throws {
        guard isEnabled, let role else { return }
        guard let header = authorization, header.lowercased().hasPrefix("bearer ") else {
            var error = APIError(.unauthorized, "unauthorized", detail: "this server requires Authorization: Bearer <token>").naming("Authorization")
            error.headers[.wwwAuthenticate] = "Bearer"
            throw error
        }
        let token = String(header.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        guard let granted = tokens[token] else {
            var error = APIError(.unauthorized, "unauthorized", detail: "unknown token").naming("Authorization")
            error.headers[.wwwAuthenticate] = "Bearer error=\"invalid_token\""
            throw error
        }
        guard granted >= role else {
            throw APIError(.forbidden, "forbidden", detail: "this route needs the \(role.name) role; the token has \(granted.name)").naming("Authorization")
        }
    }
}

public struct AccessError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
