import BanyanClient

/// What a run knows when it decides whether a task may start and fills in its templates: the
/// run's inputs, the outputs of completed tasks, and the states each task has reached (any
/// attempt). The engine builds it from the run's events.
public struct RunContext: Sendable, Hashable {
    /// Input values (templates already filled: inputs never hold any).
    public var inputs: [String: WorkflowValue]
    /// Completed tasks' outputs.
    public var outputs: [String: WorkflowValue]
    /// The states each task reached, over all its attempts.
    public var states: [String: Set<TaskState>]

    public init(inputs: [String: WorkflowValue] = [:], outputs: [String: WorkflowValue] = [:], states: [String: Set<TaskState>] = [:]) {
        self.inputs = inputs
        self.outputs = outputs
        self.states = states
    }

    /// The value a reference names, nil when it is not there (yet).
    public func value(of reference: Reference) -> WorkflowValue? {
        switch reference {
        case .input(let name):
            return inputs[name]
        case .output(let task, let path):
            guard var value = outputs[task] else { return nil }
            for key in path {
                switch value {
                case .object(let members):
                    guard let member = members.first(where: { $0.key == key }) else { return nil }
                    value = member.value
                case .array(let items):
                    guard let i = Int(key), items.indices.contains(i) else { return nil }
                    value = items[i]
                default:
                    return nil
                }
            }
            return value
        }
    }
}

/// A template's reference that is not there when the task is to start.
public struct RenderError: Error, Sendable, CustomStringConvertible {
    public var reference: Reference

    public var description: String {
        switch reference {
        case .input(let name): "inputs.\(name) has no value"
        case .output(let task, let path):
            path.isEmpty ? "\(reference) is not there: \(task) has not completed" : "\(reference) is not there: \(task) has not completed, or its output has no \(path.joined(separator: "."))"
        }
    }
}

extension Condition {
    /// Whether the condition holds now. A test of a reference that is not there is false (and
    /// so is its comparison), so a condition over a later output simply waits for it.
    public func holds(in context: RunContext) -> Bool {
        switch self {
        case .event(let task, let state): return context.states[task]?.contains(state) ?? false
        case .not(let c): return !c.holds(in: context)
        case .and(let a, let b): return a.holds(in: context) && b.holds(in: context)
        case .or(let a, let b): return a.holds(in: context) || b.holds(in: context)
        case .test(let left, let comparison):
            guard let l = Self.value(left, context) else { return false }
            guard let comparison else { return l.isTruthy }
            guard let r = Self.value(comparison.right, context) else { return false }
            return Self.compare(l, comparison.op, r)
        }
    }

    private static func value(_ operand: Operand, _ context: RunContext) -> WorkflowValue? {
        switch operand {
        case .literal(let v): v
        case .reference(let r): context.value(of: r)
        }
    }

    /// Numbers compare as numbers, strings by their characters, booleans and null by equality
    /// only; values of different kinds are never equal and never ordered.
    static func compare(_ l: WorkflowValue, _ op: Operator, _ r: WorkflowValue) -> Bool {
        switch (l, r) {
        case let (.number(a), .number(b)):
            guard let x = Double(a), let y = Double(b) else { return false }
            return ordered(x, op, y)
        case let (.string(a), .string(b)):
            return ordered(a.text, op, b.text)
        default:
            switch op {
            case .eq: return l == r
            case .ne: return l != r
            default: return false
            }
        }
    }

    private static func ordered<T: Comparable>(_ a: T, _ op: Operator, _ b: T) -> Bool {
        switch op {
        case .eq: a == b
        case .ne: a != b
        case .lt: a < b
        case .le: a <= b
        case .gt: a > b
        case .ge: a >= b
        }
    }
}

extension WorkflowValue {
    /// Present and not false, null, 0 or "".
    public var isTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let b): b
        case .number(let n): (Double(n) ?? 0) != 0
        case .string(let t): !t.text.isEmpty
        case .array, .object: true
        }
    }

    /// The value with every template filled in from `context`. A string that is exactly one
    /// template takes the referenced value itself (a number stays a number); a template among
    /// other text becomes that text with the value written in (strings as they are, other
    /// values as JSON).
    public func rendered(in context: RunContext) throws(RenderError) -> WorkflowValue {
        switch self {
        case .null, .bool, .number: return self
        case .string(let template): return try template.rendered(in: context)
        case .array(let items):
            var out: [WorkflowValue] = []
            for item in items { out.append(try item.rendered(in: context)) }
            return .array(out)
        case .object(let members):
            var out: [(key: String, value: WorkflowValue)] = []
            for (key, value) in members { out.append((key, try value.rendered(in: context))) }
            return .object(out)
        }
    }

    /// The value as text: a string as it is, anything else as compact JSON.
    public var text: String {
        if case .string(let t) = self { return t.text }
        var out = ""
        writeJSON(into: &out)
        return out
    }

    /// Compact JSON (numbers as written).
    public func writeJSON(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let t): Self.writeString(t.text, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeJSON(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += "," }
                Self.writeString(member.key, into: &out)
                out += ":"
                member.value.writeJSON(into: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += BanyanHTTPClient.quote(s)
    }
}

extension Template {
    /// The text of a template without references (or with them as written, `{{ ... }}`).
    public var text: String {
        parts.map { part in
            switch part {
            case .text(let s): s
            case .reference(let r): "{{ \(r) }}"
            }
        }.joined()
    }

    public func rendered(in context: RunContext) throws(RenderError) -> WorkflowValue {
        if parts.count == 1, case .reference(let r) = parts[0] {
            guard let value = context.value(of: r) else { throw RenderError(reference: r) }
            return value
        }
        var out = ""
        for part in parts {
            switch part {
            case .text(let s): out += s
            case .reference(let r):
                guard let value = context.value(of: r) else { throw RenderError(reference: r) }
                out += value.text
            }
        }
        return .text(out)
    }
}
