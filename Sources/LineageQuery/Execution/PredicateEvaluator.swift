import EventLog

/// Evaluates a checked predicate against one event. Missing fields compare equal only to `null`;
/// payload numbers compare numerically, strings by their UTF-8 text.
extension Predicate {
    /// Whether it reads the message or the payload, which compaction drops: on a compacted
    /// event such a condition cannot tell, and the answer says how many it met (`compacted`).
    public var readsContent: Bool {
        switch self {
        case .and(let a, let b), .or(let a, let b): return a.readsContent || b.readsContent
        case .not(let p): return p.readsContent
        case .compare(let field, _, _), .isIn(let field, _), .contains(let field, _), .exists(let field):
            if case .payload = field { return true }
            return field == .message
        }
    }

    public func matches(_ event: Event) -> Bool {
        judge(event) == true
    }

    /// The condition on `event`: true, false, or nil when it depends on content compaction
    /// dropped (three-valued, as SQL treats NULL: `not` of unknown is unknown, `and` is false
    /// if either side is false, `or` is true if either side is true). An unknown is not a match.
    public func judge(_ event: Event) -> Bool? {
        var payload: JSONValue?? = .none  // parsed at most once, and only if a payload field is used
        return evaluate(event, &payload)
    }

    private func evaluate(_ event: Event, _ payload: inout JSONValue??) -> Bool? {
        switch self {
        case .and(let a, let b):
            let left = a.evaluate(event, &payload)
            if left == false { return false }
            let right = b.evaluate(event, &payload)
            if right == false { return false }
            return left == nil || right == nil ? nil : true
        case .or(let a, let b):
            let left = a.evaluate(event, &payload)
            if left == true { return true }
            let right = b.evaluate(event, &payload)
            if right == true { return true }
            return left == nil || right == nil ? nil : false
        case .not(let p): return p.evaluate(event, &payload).map { !$0 }
        case .compare(let field, let op, let value):
            if field.isDropped(from: event) { return nil }
            return Self.compare(field.value(of: event, &payload), op, value)
        case .isIn(let field, let values):
            if field.isDropped(from: event) { return nil }
            let actual = field.value(of: event, &payload)
            return values.contains { Self.compare(actual, .equal, $0) }
        case .contains(let field, let needle):
            if field.isDropped(from: event) { return nil }
            guard case .string(let text)? = field.value(of: event, &payload) else { return false }
            return text.contains(needle)
        case .exists(let field):
            if field.isDropped(from: event) { return nil }
            return field.value(of: event, &payload) != nil
        }
    }

    static func compare(_ actual: Value?, _ op: Comparison, _ expected: Value) -> Bool {
        guard let actual, actual != .null else {
            let isNull = expected == .null
            return op == .equal ? isNull : (op == .notEqual ? !isNull : false)
        }
        let order: Int?
        switch (actual, expected) {
        case (.string(let a), .string(let b)): order = a == b ? 0 : (Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) ? -1 : 1)
        case (.number(let at, let a), .number(let bt, let b)): order = at == bt ? 0 : (a < b ? -1 : (a > b ? 1 : 0))
        case (.bool(let a), .bool(let b)): order = a == b ? 0 : 1
        case (.time(let a), .time(let b)): order = a == b ? 0 : (a < b ? -1 : 1)
        case (.id(let a), .id(let b)): order = a == b ? 0 : (a < b ? -1 : 1)
        default: order = nil
        }
        guard let order else { return op == .notEqual }
        switch op {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .less: return order < 0
        case .lessEqual: return order <= 0
        case .greater: return order > 0
        case .greaterEqual: return order >= 0
        }
    }
}

extension FieldRef {
    /// Whether compaction dropped this field's value from `event` (its message or payload).
    func isDropped(from event: Event) -> Bool {
        guard let dropped = event.compaction else { return false }
        switch self {
        case .message: return dropped.messageBytes != nil
        case .payload: return dropped.payloadBytes != nil
        default: return false
        }
    }

    /// The field's value on `event`; nil when absent.
    func value(of event: Event, _ payload: inout JSONValue??) -> Value? {
        switch self {
        case .id: return .id(event.id)
        case .type: return .string(event.type)
        case .key: return event.key.map(Value.string)
        case .stream: return event.stream.map(Value.string)
        case .time: return .time(event.timeUnixNano)
        case .message: return event.message.map(Value.string)
        case .payload(let path):
            if case .none = payload { payload = .some(event.payloadValue) }
            guard case .some(.some(var node)) = payload else { return nil }
            for name in path {
                guard let next = node[name] else { return nil }
                node = next
            }
            switch node {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .number(let t): return .number(text: t, double: Double(t) ?? .nan)
            case .string(let s): return .string(s)
            case .array, .object: return .string(String(decoding: node.serialized(), as: UTF8.self))
            }
        }
    }
}
