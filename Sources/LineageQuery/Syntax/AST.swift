/// The syntax tree. Value types only; every node keeps the byte range it came from, so later
/// stages can point at the text in their errors.

/// `[explain] selection`
public struct Statement: Sendable, Hashable {
    public var explain: Bool
    public var selection: Selection
}

/// A source of events with the clauses that shape what is returned.
public struct Selection: Sendable, Hashable {
    public var source: Source
    public var filter: Condition?
    /// `follow matching`: traversals only walk through events that match the filter.
    public var followMatchingOnly: Bool
    public var order: Order?
    public var limit: Limit?
    public var range: Range<Int>
}

public indirect enum Source: Sendable, Hashable {
    case ancestors(Start, DepthRange)
    case descendants(Start, DepthRange)
    case path(Start, Start)
    case paths(Start, Start)
    case between(Start, Start)
    /// `events`: a scan of the log, by index where the filter allows.
    case events
    case roots(Selection)
    case heads(Selection)
    case count(Selection)
}

/// Where a traversal starts: an id or a key.
public enum Start: Sendable, Hashable {
    case id(UInt64, Range<Int>)
    case key(String, Range<Int>)
}

/// Hop distance from the start (shortest), both ends inclusive; `max == nil` is unbounded.
public struct DepthRange: Sendable, Hashable {
    public var min: Int
    public var max: Int?
    public static let any = DepthRange(min: 1, max: nil)
}

public indirect enum Condition: Sendable, Hashable {
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition)
    case compare(Field, Comparison, Literal)
    case isIn(Field, [Literal])
    case contains(Field, Literal)
    case exists(Field)
}

public enum Comparison: String, Sendable, Hashable {
    case equal = "=", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
}

/// `type`, `key`, `stream`, `time`, `message`, `id`, or `payload.a.b`.
public struct Field: Sendable, Hashable {
    public var path: [String]
    public var range: Range<Int>
    public var name: String { path.joined(separator: ".") }
}

public struct Literal: Sendable, Hashable {
    public enum Value: Sendable, Hashable {
        case string(String)
        case integer(String)
        case decimal(String)
        case bool(Bool)
        case null
    }
    public var value: Value
    public var range: Range<Int>
}

public struct Order: Sendable, Hashable {
    public enum Key: String, Sendable, Hashable { case id, time }
    public var key: Key
    public var descending: Bool
}

public struct Limit: Sendable, Hashable {
    public var count: Int
    public var range: Range<Int>
}
