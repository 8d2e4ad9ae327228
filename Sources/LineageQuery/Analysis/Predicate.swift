import EventLog

/// A checked condition: fields resolved, literals converted to the type their field needs.
/// This is what the executor evaluates against events.
public indirect enum Predicate: Sendable, Hashable {
    case and(Predicate, Predicate)
    case or(Predicate, Predicate)
    case not(Predicate)
    case compare(FieldRef, Comparison, Value)
    case isIn(FieldRef, [Value])
    case contains(FieldRef, String)
    case exists(FieldRef)
}

/// The event attributes a condition can name.
public enum FieldRef: Sendable, Hashable {
    case id, type, key, stream, time, message
    /// A path into the JSON payload; empty means the payload itself.
    case payload([String])

    static let topLevel = ["id", "type", "key", "stream", "time", "message", "payload"]
}

/// A literal converted for its field.
public enum Value: Sendable, Hashable {
    case string(String)
    /// Integers keep their text so 64-bit values compare exactly; `double` is for ordering.
    case number(text: String, double: Double)
    case bool(Bool)
    case null
    /// Unix nanoseconds (`time` literals: RFC 3339 strings or integers).
    case time(Int64)
    case id(EventID)
}

/// A statement after analysis.
public struct AnalyzedQuery: Sendable, Hashable {
    public var statement: Statement
    /// The checked `where` of the outermost selection.
    public var predicate: Predicate?
}
