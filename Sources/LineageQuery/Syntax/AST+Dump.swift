/// A compact, stable text form of the tree, for golden tests and `explain`.
extension Statement {
    public var dump: String { (explain ? "(explain " : "") + selection.dump + (explain ? ")" : "") }
}

extension Selection {
    public var dump: String {
        var parts = [source.dump]
        if let filter { parts.append("(where \(filter.dump)\(followMatchingOnly ? " follow-matching" : ""))") }
        if let order { parts.append("(order \(order.key.rawValue) \(order.descending ? "desc" : "asc"))") }
        if let limit { parts.append("(limit \(limit.count))") }
        return parts.count == 1 ? parts[0] : "(select " + parts.joined(separator: " ") + ")"
    }
}

extension Source {
    public var dump: String {
        switch self {
        case .ancestors(let s, let d): "(ancestors \(s.dump)\(d.dump))"
        case .descendants(let s, let d): "(descendants \(s.dump)\(d.dump))"
        case .path(let a, let b): "(path \(a.dump) \(b.dump))"
        case .paths(let a, let b): "(paths \(a.dump) \(b.dump))"
        case .between(let a, let b): "(between \(a.dump) \(b.dump))"
        case .events: "(events)"
        case .roots(let s): "(roots \(s.dump))"
        case .heads(let s): "(heads \(s.dump))"
        case .count(let s): "(count \(s.dump))"
        }
    }
}

extension Start {
    public var dump: String {
        switch self {
        case .id(let id, _): String(id)
        case .key(let key, _): "key:\(key.debugDescription)"
        }
    }
}

extension DepthRange {
    var dump: String {
        self == .any ? "" : " depth:\(min)..\(max.map(String.init) ?? "")"
    }
}

extension Condition {
    public var dump: String {
        switch self {
        case .and(let a, let b): "(and \(a.dump) \(b.dump))"
        case .or(let a, let b): "(or \(a.dump) \(b.dump))"
        case .not(let c): "(not \(c.dump))"
        case .compare(let f, let op, let v): "(\(op.rawValue) \(f.name) \(v.dump))"
        case .isIn(let f, let vs): "(in \(f.name) \(vs.map(\.dump).joined(separator: " ")))"
        case .contains(let f, let v): "(contains \(f.name) \(v.dump))"
        case .exists(let f): "(exists \(f.name))"
        }
    }
}

extension Literal {
    public var dump: String {
        switch value {
        case .string(let s): s.debugDescription
        case .integer(let t), .decimal(let t): t
        case .bool(let b): String(b)
        case .null: "null"
        }
    }
}
