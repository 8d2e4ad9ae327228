/// `explain`: one operator per line, the input indented below it.
extension LogicalPlan {
    public var explained: String {
        var lines: [String] = []
        var node: LogicalPlan? = self
        var indent = 0
        while let current = node {
            let (line, input) = current.describe()
            lines.append(String(repeating: "  ", count: indent) + line)
            node = input
            indent += 1
        }
        return lines.joined(separator: "\n")
    }

    private func describe() -> (String, LogicalPlan?) {
        switch self {
        case .scan(.log): return ("scan log (id order)", nil)
        case .scan(.stream(let s)): return ("scan stream column \(s.debugDescription) (in memory)", nil)
        case .scan(.type(let t)): return ("scan type column \(t.debugDescription) (in memory)", nil)
        case .traverse(let t):
            let range = t.direction == .ancestors ? "ids [1, start)" : "ids (start, last]"
            let via = t.direction == .ancestors ? "parents" : "children"
            var line = "traverse \(t.direction.rawValue) from \(t.start.dump) via \(via), \(range)"
            if let max = t.depth.max { line += ", depth \(t.depth.min)...\(max)" } else if t.depth.min > 1 { line += ", depth >= \(t.depth.min)" }
            if let follow = t.follow { line += ", only through events matching \(follow.explained)" }
            return (line + ", visited set: bitset over the range", nil)
        case .pathSearch(let a, let b, let k):
            return (k == 1 ? "shortest path \(a.dump) -> \(b.dump), ids (\(a.dump), \(b.dump))" : "up to \(k) shortest paths \(a.dump) -> \(b.dump), ids (\(a.dump), \(b.dump))", nil)
        case .between(let a, let b):
            return ("between \(a.dump) and \(b.dump): descendants of \(a.dump) ∩ ancestors of \(b.dump), ids [\(a.dump), \(b.dump)]", nil)
        case .filter(let p, let input): return ("filter \(p.explained)", input)
        case .sets(let op, let input): return (op.rawValue, input)
        case .sort(let order, let input): return ("sort by \(order.key.rawValue) \(order.descending ? "desc" : "asc")", input)
        case .limit(let n, let input): return ("limit \(n)", input)
        }
    }
}

extension Predicate {
    var explained: String {
        switch self {
        case .and(let a, let b): "(\(a.explained) and \(b.explained))"
        case .or(let a, let b): "(\(a.explained) or \(b.explained))"
        case .not(let p): "not \(p.explained)"
        case .compare(let f, let op, let v): "\(f.explained) \(op.rawValue) \(v.explained)"
        case .isIn(let f, let vs): "\(f.explained) in (\(vs.map(\.explained).joined(separator: ", ")))"
        case .contains(let f, let s): "\(f.explained) contains \(s.debugDescription)"
        case .exists(let f): "exists(\(f.explained))"
        }
    }
}

extension FieldRef {
    var explained: String {
        switch self {
        case .id: "id"
        case .type: "type"
        case .key: "key"
        case .stream: "stream"
        case .time: "time"
        case .message: "message"
        case .payload(let path): (["payload"] + path).joined(separator: ".")
        }
    }
}

extension Value {
    var explained: String {
        switch self {
        case .string(let s): s.debugDescription
        case .number(let text, _): text
        case .bool(let b): String(b)
        case .null: "null"
        case .time(let t): "\(t)ns"
        case .id(let id): String(id)
        }
    }
}
