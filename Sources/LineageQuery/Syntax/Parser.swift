import BanyanClient
import EventLog
/// Recursive-descent parser over the token list. Nesting (parentheses, nested set operations) is
/// bounded by `depthMax`, and every loop consumes a token, so any input ends in a tree or a
/// `QueryError` with the byte range at fault.
public struct Parser {
    private let bytes: [UInt8]
    private var tokens: [Token]
    private var index = 0
    private var depth = 0
    /// Nesting of parentheses and set operations, the largest `depth` bound and `in` list (`Limits`).
    public static let depthMax = Limits().queryNestingMax
    static let hopsMax = Limits().queryHopsMax
    static let inListMax = Limits().queryInListMax

    init(_ text: String) throws(QueryError) {
        bytes = Array(text.utf8)
        tokens = try Lexer.tokenize(text)
    }

    /// Parses a whole statement.
    public static func parse(_ text: String) throws(QueryError) -> Statement {
        var parser = try Parser(text)
        let statement = try parser.statement()
        try parser.expectEnd()
        return statement
    }

    // MARK: grammar

    /// statement : ["explain"] selection
    mutating func statement() throws(QueryError) -> Statement {
        let explain = takeKeyword("explain")
        return Statement(explain: explain, selection: try selection())
    }

    /// selection : source ["where" condition ["follow" "matching"]] ["order" "by" ("id"|"time") ["asc"|"desc"]] ["limit" INT]
    mutating func selection() throws(QueryError) -> Selection {
        let start = current.range.lowerBound
        let source = try self.source()
        var filter: Condition?
        var follow = false
        if takeKeyword("where") {
            filter = try condition()
            if takeKeyword("follow") {
                try expectKeyword("matching", hint: "write `follow matching` to walk only through matching events")
                follow = true
            }
        }
        var order: Order?
        if takeKeyword("order") {
            try expectKeyword("by")
            let keyToken = current
            guard let key = Order.Key(rawValue: word(keyToken).lowercased()), keyToken.kind == .identifier else {
                throw error("expected id or time after order by", at: keyToken)
            }
            advance()
            let descending = takeKeyword("desc")
            if !descending { _ = takeKeyword("asc") }
            order = Order(key: key, descending: descending)
        }
        var limit: Limit?
        if takeKeyword("limit") {
            let token = current
            guard token.kind == .integer, let count = Int(word(token)), count >= 1 else {
                throw error("limit must be a positive integer", at: token)
            }
            advance()
            limit = Limit(count: count, range: token.range)
        }
        return Selection(
            source: source, filter: filter, followMatchingOnly: follow, order: order, limit: limit,
            range: start..<previousEnd)
    }

    /// source : ("ancestors"|"descendants") "(" start ["," "depth" cmp INT] ")"
    ///        | ("path"|"paths"|"between") "(" start "," start ")"
    ///        | ("roots"|"heads"|"count") "(" selection ")"
    ///        | "events"
    mutating func source() throws(QueryError) -> Source {
        let token = current
        guard token.kind == .identifier else { throw error("expected a query such as ancestors(42) or events where ...", at: token) }
        let name = word(token).lowercased()
        switch name {
        case "events":
            advance()
            return .events
        case "ancestors", "descendants":
            advance()
            try expect(.leftParen)
            let start = try self.start()
            var depth = DepthRange.any
            if take(.comma) { depth = try depthRange() }
            try expect(.rightParen)
            return name == "ancestors" ? .ancestors(start, depth) : .descendants(start, depth)
        case "path", "paths", "between":
            advance()
            try expect(.leftParen)
            let from = try start()
            try expect(.comma)
            let to = try start()
            try expect(.rightParen)
            return name == "path" ? .path(from, to) : name == "paths" ? .paths(from, to) : .between(from, to)
        case "roots", "heads", "count":
            advance()
            try expect(.leftParen)
            try enter(token)
            let inner = try selection()
            depth -= 1
            try expect(.rightParen)
            return name == "roots" ? .roots(inner) : name == "heads" ? .heads(inner) : .count(inner)
        default:
            let known = ["ancestors", "descendants", "path", "paths", "between", "roots", "heads", "count", "events", "explain"]
            throw QueryError(
                .syntax, "unknown query '\(word(token))'", range: token.range,
                suggestion: Suggest.nearest(word(token), in: known).map { "did you mean \($0)?" })
        }
    }

    /// start : INT | "key" STRING
    mutating func start() throws(QueryError) -> Start {
        let token = current
        if token.kind == .integer, let id = UInt64(word(token)), id >= 1 {
            advance()
            return .id(id, token.range)
        }
        if takeKeyword("key") {
            let keyToken = current
            guard keyToken.kind == .string else { throw error("expected a quoted key after key", at: keyToken) }
            advance()
            return .key(try unquote(keyToken), keyToken.range)
        }
        throw error("expected an event id (1 or more) or key \"...\"", at: token)
    }

    /// depth : "depth" ("<="|"<"|"="|">="|">") INT
    mutating func depthRange() throws(QueryError) -> DepthRange {
        try expectKeyword("depth", hint: "the second argument bounds hops, e.g. depth <= 3")
        let op = current
        advance()
        let number = current
        guard number.kind == .integer, let n = Int(word(number)), n >= 0, n <= Self.hopsMax else {
            throw error("expected a depth between 0 and \(Self.hopsMax)", at: number)
        }
        advance()
        switch op.kind {
        case .lessEqual: return DepthRange(min: 1, max: n)
        case .less: return DepthRange(min: 1, max: n - 1)
        case .equal: return DepthRange(min: n, max: n)
        case .greaterEqual: return DepthRange(min: n, max: nil)
        case .greater: return DepthRange(min: n + 1, max: nil)
        default: throw error("expected <=, <, =, >= or > after depth", at: op)
        }
    }

    /// condition : conjunction ("or" conjunction)*
    mutating func condition() throws(QueryError) -> Condition {
        var left = try conjunction()
        while takeKeyword("or") { left = .or(left, try conjunction()) }
        return left
    }

    /// conjunction : negation ("and" negation)*
    mutating func conjunction() throws(QueryError) -> Condition {
        var left = try negation()
        while takeKeyword("and") { left = .and(left, try negation()) }
        return left
    }

    /// negation : "not" negation | primary
    mutating func negation() throws(QueryError) -> Condition {
        let token = current
        if takeKeyword("not") {
            try enter(token)
            defer { depth -= 1 }
            return .not(try negation())
        }
        return try primary()
    }

    /// primary : "(" condition ")" | "exists" "(" field ")" | field cmp literal
    ///         | field "in" "(" literal ("," literal)* ")" | field "contains" literal
    mutating func primary() throws(QueryError) -> Condition {
        let token = current
        if take(.leftParen) {
            try enter(token)
            let inner = try condition()
            depth -= 1
            try expect(.rightParen)
            return inner
        }
        if isKeyword(token, "exists"), peek.kind == .leftParen {
            advance()
            advance()
            let field = try self.field()
            try expect(.rightParen)
            return .exists(field)
        }
        let field = try self.field()
        if takeKeyword("in") {
            try expect(.leftParen)
            var values = [try literal()]
            while take(.comma) {
                guard values.count < Self.inListMax else { throw error("an in list holds at most \(Self.inListMax) values", at: current) }
                values.append(try literal())
            }
            try expect(.rightParen)
            return .isIn(field, values)
        }
        if takeKeyword("contains") { return .contains(field, try literal()) }
        let op = current
        let comparison: Comparison
        switch op.kind {
        case .equal: comparison = .equal
        case .notEqual: comparison = .notEqual
        case .less: comparison = .less
        case .lessEqual: comparison = .lessEqual
        case .greater: comparison = .greater
        case .greaterEqual: comparison = .greaterEqual
        default: throw error("expected a comparison (= != < <= > >=), in, or contains after \(field.name)", at: op)
        }
        advance()
        return .compare(field, comparison, try literal())
    }

    /// field : NAME ("." NAME)*
    mutating func field() throws(QueryError) -> Field {
        let first = current
        guard first.kind == .identifier else { throw error("expected a field such as type, time or payload.status", at: first) }
        advance()
        var path = [word(first)]
        while take(.dot) {
            let part = current
            guard part.kind == .identifier || part.kind == .string else { throw error("expected a name after '.'", at: part) }
            advance()
            path.append(part.kind == .string ? try unquote(part) : word(part))
            guard path.count <= 32 else { throw error("a field path holds at most 32 names", at: part) }
        }
        return Field(path: path, range: first.range.lowerBound..<previousEnd)
    }

    /// literal : STRING | INT | DECIMAL | "true" | "false" | "null"
    mutating func literal() throws(QueryError) -> Literal {
        let token = current
        let value: Literal.Value
        switch token.kind {
        case .string: value = .string(try unquote(token))
        case .integer: value = .integer(word(token))
        case .decimal: value = .decimal(word(token))
        case .identifier where ["true", "false"].contains(word(token).lowercased()): value = .bool(word(token).lowercased() == "true")
        case .identifier where word(token).lowercased() == "null": value = .null
        default:
            throw QueryError(
                .syntax, "expected a value (a \"string\", a number, true, false or null)", range: token.range,
                suggestion: token.kind == .identifier ? "quote text values: \"\(word(token))\"" : nil)
        }
        advance()
        return Literal(value: value, range: token.range)
    }

    // MARK: token helpers

    private var current: Token { tokens[index] }
    private var peek: Token { tokens[min(index + 1, tokens.count - 1)] }
    private var previousEnd: Int { index > 0 ? tokens[index - 1].range.upperBound : 0 }

    private mutating func advance() {
        if index < tokens.count - 1 { index += 1 }
    }

    private func word(_ token: Token) -> String {
        String(decoding: bytes[token.range], as: UTF8.self)
    }

    private func isKeyword(_ token: Token, _ keyword: String) -> Bool {
        token.kind == .identifier && word(token).lowercased() == keyword
    }

    private mutating func takeKeyword(_ keyword: String) -> Bool {
        guard isKeyword(current, keyword) else { return false }
        advance()
        return true
    }

    private mutating func expectKeyword(_ keyword: String, hint: String? = nil) throws(QueryError) {
        guard takeKeyword(keyword) else {
            throw QueryError(.syntax, "expected \(keyword), found \(describe(current))", range: current.range, suggestion: hint)
        }
    }

    private mutating func take(_ kind: Token.Kind) -> Bool {
        guard current.kind == kind else { return false }
        advance()
        return true
    }

    private mutating func expect(_ kind: Token.Kind) throws(QueryError) {
        guard take(kind) else { throw QueryError(.syntax, "expected \(kind), found \(describe(current))", range: current.range) }
    }

    mutating func expectEnd() throws(QueryError) {
        guard current.kind == .end else {
            throw QueryError(
                .syntax, "unexpected \(describe(current)) after the end of the query", range: current.range,
                suggestion: "clauses come in the order: where, follow matching, order by, limit")
        }
    }

    private mutating func enter(_ token: Token) throws(QueryError) {
        depth += 1
        guard depth <= Self.depthMax else { throw QueryError(.limit, "the query nests deeper than \(Self.depthMax) levels", range: token.range) }
    }

    private func describe(_ token: Token) -> String {
        token.kind == .end ? "the end of the query" : "'\(word(token))'"
    }

    private func error(_ message: String, at token: Token) -> QueryError {
        QueryError(.syntax, token.kind == .end ? message + ", found the end of the query" : message, range: token.range)
    }

    private func unquote(_ token: Token) throws(QueryError) -> String {
        var out: [UInt8] = []
        var i = token.range.lowerBound + 1
        let end = token.range.upperBound - 1
        while i < end {
            if bytes[i] == UInt8(ascii: "\\") {
                switch bytes[i + 1] {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                default: out.append(bytes[i + 1])
                }
                i += 2
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
