/// A value of a definition (an input's default, a request body, an argv element): JSON's shapes,
/// with strings that may hold `{{ ... }}` templates (`Template`), checked when the definition is
/// parsed and filled in when the task runs.
public indirect enum WorkflowValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// The number as written (YAML and JSON keep it exact).
    case number(String)
    case string(Template)
    case array([WorkflowValue])
    /// Members in the order written.
    case object([(key: String, value: WorkflowValue)])

    public static func == (a: WorkflowValue, b: WorkflowValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bool(x), .bool(y)): x == y
        case let (.number(x), .number(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.object(x), .object(y)): x.elementsEqual(y) { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(b)
        case .number(let n): hasher.combine(n)
        case .string(let t): hasher.combine(t)
        case .array(let a): hasher.combine(a)
        case .object(let members):
            for (key, value) in members {
                hasher.combine(key)
                hasher.combine(value)
            }
        }
    }

    /// The references of every template inside.
    public var references: [Reference] {
        switch self {
        case .null, .bool, .number: []
        case .string(let t): t.references
        case .array(let a): a.flatMap(\.references)
        case .object(let members): members.flatMap(\.value.references)
        }
    }
}

/// A string with `{{ reference }}` placeholders: literal text and references, in order.
public struct Template: Sendable, Hashable {
    public enum Part: Sendable, Hashable {
        case text(String)
        case reference(Reference)
    }

    public var parts: [Part]

    public var references: [Reference] {
        parts.compactMap { if case .reference(let r) = $0 { r } else { nil } }
    }

    /// The text when there is no placeholder.
    public var literal: String? {
        if parts.isEmpty { return "" }
        if parts.count == 1, case .text(let s) = parts[0] { return s }
        return nil
    }
}

/// What a template or a condition reads: `inputs.<name>` or `tasks.<id>.output[.<key>...]`.
public enum Reference: Sendable, Hashable, CustomStringConvertible {
    case input(String)
    case output(task: String, path: [String])

    public var description: String {
        switch self {
        case .input(let name): "inputs.\(name)"
        case .output(let task, let path): (["tasks", task, "output"] + path).joined(separator: ".")
        }
    }

    public var task: String? {
        if case .output(let task, _) = self { task } else { nil }
    }
}
