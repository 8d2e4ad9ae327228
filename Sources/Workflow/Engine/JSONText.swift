import Yams

/// JSON text read into `WorkflowValue`s: event pages, payloads, a task's JSON output. JSON is
/// YAML's flow syntax, so Yams (already the definition reader) parses it; scalars follow the JSON
/// rules of `DefinitionParser.scalar`, numbers stay as written, and strings are plain text (a
/// `{{` in a payload is never a template).
public enum JSONText {
    public struct Error: Swift.Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ bytes: [UInt8], depthMax: Int = 64) throws(Error) -> WorkflowValue {
        let text = String(decoding: bytes, as: UTF8.self)
        // Anchors are YAML, not JSON; refusing them also keeps alias expansion out.
        guard DefinitionParser.anchorPosition(text) == nil else { throw Error(description: "not JSON: it holds a YAML anchor") }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw Error(description: "not JSON: \(error)")
        }
        guard let node else { throw Error(description: "not JSON: empty") }
        return try value(node, depth: 0, depthMax: depthMax)
    }

    private static func value(_ node: Node, depth: Int, depthMax: Int) throws(Error) -> WorkflowValue {
        guard depth <= depthMax else { throw Error(description: "JSON nested deeper than \(depthMax)") }
        switch node {
        case .scalar:
            switch DefinitionParser.scalar(node) {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .number(let n): return .number(n)
            case .string(let s): return .string(Template(parts: s.isEmpty ? [] : [.text(s)]))
            }
        case .sequence(let items):
            var out: [WorkflowValue] = []
            for item in items { out.append(try value(item, depth: depth + 1, depthMax: depthMax)) }
            return .array(out)
        case .mapping(let mapping):
            var out: [(key: String, value: WorkflowValue)] = []
            for (key, item) in mapping {
                guard case .scalar(let k) = key else { throw Error(description: "not JSON: a key that is not a string") }
                out.append((k.string, try value(item, depth: depth + 1, depthMax: depthMax)))
            }
            return .object(out)
        case .alias:
            throw Error(description: "not JSON: a YAML alias")
        }
    }
}

extension WorkflowValue {
    /// The member `key` of an object.
    public subscript(_ key: String) -> WorkflowValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var stringValue: String? {
        if case .string(let t) = self { return t.text }
        return nil
    }

    public var intValue: Int? {
        if case .number(let n) = self { return Int(n) }
        return nil
    }

    public var arrayValue: [WorkflowValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// A string value (plain text).
    public static func text(_ s: String) -> WorkflowValue { .string(Template(parts: s.isEmpty ? [] : [.text(s)])) }

    /// Compact JSON.
    public var json: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }
}
