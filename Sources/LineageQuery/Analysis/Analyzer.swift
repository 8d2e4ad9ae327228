import BanyanClient
import EventLog
import Foundation

/// Checks names and types, with suggestions: unknown field → nearest field name; a text value
/// where a number belongs; clauses that make no sense together. Pure: no store access.
public enum Analyzer {
    public static func analyze(_ statement: Statement) throws(QueryError) -> AnalyzedQuery {
        try check(statement.selection)
        return AnalyzedQuery(statement: statement, predicate: try statement.selection.filter.map { (c) throws(QueryError) in try predicate(c) })
    }

    /// Parses and analyses in one call.
    public static func analyze(_ text: String) throws(QueryError) -> AnalyzedQuery {
        try analyze(try Parser.parse(text))
    }

    static func check(_ selection: Selection) throws(QueryError) {
        let isTraversal: Bool
        switch selection.source {
        case .ancestors, .descendants: isTraversal = true
        case .roots(let inner), .heads(let inner), .count(let inner):
            try check(inner)
            isTraversal = false
        default: isTraversal = false
        }
        if let filter = selection.filter { _ = try predicate(filter) }
        if selection.followMatchingOnly && !isTraversal {
            throw QueryError(.analysis, "follow matching applies to ancestors and descendants only", range: selection.range)
        }
        if selection.order != nil {
            switch selection.source {
            case .path, .paths, .count:
                throw QueryError(.analysis, "order by does not apply to path, paths or count answers", range: selection.range)
            default: break
            }
        }
        if case .count = selection.source, let limit = selection.limit {
            throw QueryError(.analysis, "limit does not apply to a count", range: limit.range, suggestion: "put the limit inside count(...)")
        }
    }

    static func predicate(_ condition: Condition) throws(QueryError) -> Predicate {
        switch condition {
        case .and(let a, let b): return .and(try predicate(a), try predicate(b))
        case .or(let a, let b): return .or(try predicate(a), try predicate(b))
        case .not(let c): return .not(try predicate(c))
        case .exists(let field):
            let ref = try resolve(field)
            guard case .payload(let path) = ref, !path.isEmpty else {
                throw QueryError(.analysis, "exists(...) tests payload fields, e.g. exists(payload.error)", range: field.range)
            }
            return .exists(ref)
        case .compare(let field, let op, let literal):
            let ref = try resolve(field)
            let value = try convert(literal, for: ref)
            if case .null = value, op != .equal && op != .notEqual {
                throw QueryError(.analysis, "null can only be compared with = or !=", range: literal.range)
            }
            if case .bool = value, op != .equal && op != .notEqual {
                throw QueryError(.analysis, "true and false can only be compared with = or !=", range: literal.range)
            }
            return .compare(ref, op, value)
        case .isIn(let field, let literals):
            let ref = try resolve(field)
            var values: [Value] = []
            for literal in literals { values.append(try convert(literal, for: ref)) }
            return .isIn(ref, values)
        case .contains(let field, let literal):
            let ref = try resolve(field)
            guard case .string(let text) = literal.value else {
                throw QueryError(.analysis, "contains takes a string", range: literal.range)
            }
            switch ref {
            case .id, .time: throw QueryError(.analysis, "contains applies to text fields, not \(field.name)", range: field.range)
            default: return .contains(ref, text)
            }
        }
    }

    static func resolve(_ field: Field) throws(QueryError) -> FieldRef {
        let head = field.path[0].lowercased()
        if head == "payload" { return .payload(Array(field.path.dropFirst())) }
        guard field.path.count == 1 else {
            throw QueryError(.analysis, "\(field.path[0]) has no members; only payload does", range: field.range,
                             suggestion: "did you mean payload.\(field.path.dropFirst().joined(separator: "."))?")
        }
        switch head {
        case "id": return .id
        case "type": return .type
        case "key": return .key
        case "stream": return .stream
        case "time": return .time
        case "message": return .message
        default:
            throw QueryError(
                .analysis, "unknown field '\(field.path[0])'", range: field.range,
                suggestion: Suggest.nearest(head, in: FieldRef.topLevel).map { "did you mean \($0)?" } ?? "fields are \(FieldRef.topLevel.joined(separator: ", ")) and payload.<path>")
        }
    }

    static func convert(_ literal: Literal, for field: FieldRef) throws(QueryError) -> Value {
        func fail(_ message: String, _ suggestion: String? = nil) -> QueryError {
            QueryError(.analysis, message, range: literal.range, suggestion: suggestion)
        }
        switch (field, literal.value) {
        case (.payload, .string(let s)): return .string(s)
        case (.payload, .integer(let t)), (.payload, .decimal(let t)): return .number(text: t, double: Double(t) ?? .nan)
        case (.payload, .bool(let b)): return .bool(b)
        case (.payload, .null): return .null
        case (.id, .integer(let t)):
            guard let id = UInt64(t) else { throw fail("an id is an integer from 1 to 18446744073709551615") }
            return .id(id)
        case (.id, _): throw fail("id compares with an integer")
        case (.time, .integer(let t)):
            guard let nanos = Int64(t) else { throw fail("time in Unix nanoseconds must fit in 64 bits") }
            return .time(nanos)
        case (.time, .string(let s)):
            guard let nanos = TimeLiteral.nanoseconds(s) else {
                throw fail("time must be RFC 3339, e.g. \"2026-01-01T00:00:00Z\", or Unix nanoseconds")
            }
            return .time(nanos)
        case (.time, _): throw fail("time compares with an RFC 3339 string or Unix nanoseconds")
        case (_, .string(let s)): return .string(s)
        case (_, .null): return .null
        default: throw fail("this field holds text: quote the value", "e.g. \"\(literal.dump)\"")
        }
    }
}

/// RFC 3339 times to Unix nanoseconds, within what 64 bits hold (1677-09-22 ... 2262-04-11);
/// nil otherwise. Shared by query literals and the HTTP `since`/`until` parameters.
public enum TimeLiteral {
    public static func nanoseconds(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var date = formatter.date(from: text)
        if date == nil {
            formatter.formatOptions = [.withInternetDateTime]
            date = formatter.date(from: text)
        }
        guard let date else { return nil }
        let nanos = (date.timeIntervalSince1970 * 1e9).rounded()
        guard nanos >= -9.2e18, nanos <= 9.2e18 else { return nil }
        return Int64(nanos)
    }
}
