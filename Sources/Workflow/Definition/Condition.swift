/// A `start_when` condition (docs/WORKFLOWS.md, "Conditions"):
///
///     condition  := or
///     or         := and ("||" and)*
///     and        := unary ("&&" unary)*
///     unary      := "!" unary | "(" condition ")" | event | "{{" test "}}"
///     event      := "event:" task-id "." state
///     test       := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
///     operand    := reference | number | "string" | 'string' | true | false | null
///     reference  := "inputs." name | "tasks." task-id ".output" ("." key)*
///
/// A test without a comparison is true when its value is present and not false, null, 0 or "".
public indirect enum Condition: Sendable, Hashable {
    case event(task: String, state: TaskState)
    case test(Operand, Comparison?)
    case not(Condition)
    case and(Condition, Condition)
    case or(Condition, Condition)

    public enum Operand: Sendable, Hashable {
        case reference(Reference)
        case literal(WorkflowValue)
    }

    public enum Operator: String, Sendable, Hashable, CaseIterable {
        case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    }

    public struct Comparison: Sendable, Hashable {
        public var op: Operator
        public var right: Operand
    }

    /// The task ids it names, in events and in output references.
    public var taskReferences: Set<String> {
        switch self {
        case .event(let task, _): [task]
        case .test(let left, let comparison):
            Set([left, comparison?.right].compactMap { operand -> String? in
                if case .reference(let r)? = operand { r.task } else { nil }
            })
        case .not(let c): c.taskReferences
        case .and(let a, let b), .or(let a, let b): a.taskReferences.union(b.taskReferences)
        }
    }

    /// The references it reads.
    public var references: [Reference] {
        switch self {
        case .event: []
        case .test(let left, let comparison):
            [left, comparison?.right].compactMap { operand -> Reference? in
                if case .reference(let r)? = operand { r } else { nil }
            }
        case .not(let c): c.references
        case .and(let a, let b), .or(let a, let b): a.references + b.references
        }
    }
}

/// The states of a task attempt that events record (`workflow.task.<state>`).
public enum TaskState: String, Sendable, Hashable, CaseIterable {
    case scheduled, started, progress, completed, failed, retrying, compensating, compensated, cancelled
}

/// Where a parse went wrong, as an offset into the text it was given.
struct SyntaxError: Error {
    var offset: Int
    var message: String
    var hint: String?
}

/// Parses conditions and templates. Bounded: the text is at most `WorkflowLimits.expressionBytesMax`
/// bytes and nesting at most `WorkflowLimits.expressionDepthMax` deep.
struct ConditionParser {
    private let bytes: [UInt8]
    private var at = 0
    private var depth = 0
    private let limits: WorkflowLimits

    init(_ text: String, limits: WorkflowLimits) {
        bytes = Array(text.utf8)
        self.limits = limits
    }

    static func parse(_ text: String, limits: WorkflowLimits) throws(SyntaxError) -> Condition {
        guard text.utf8.count <= limits.expressionBytesMax else {
            throw SyntaxError(offset: 0, message: "the condition is \(text.utf8.count) bytes, more than \(limits.expressionBytesMax)")
        }
        var parser = ConditionParser(text, limits: limits)
        let condition = try parser.or()
        parser.skipSpace()
        guard parser.at == parser.bytes.count else {
            throw SyntaxError(offset: parser.at, message: "unexpected \(parser.describeHere())", hint: "join conditions with && or ||")
        }
        return condition
    }

    /// The `{{ reference }}` placeholders of a string value, in one pass over its bytes. A
    /// placeholder holding a quoted string is that text: `{{ "{{" }}` writes a literal `{{`.
    static func template(_ text: String, limits: WorkflowLimits) throws(SyntaxError) -> Template {
        let bytes = Array(text.utf8)
        var parts: [Template.Part] = []
        var textStart = 0
        var i = 0
        func flush(_ end: Int) {
            if end > textStart { parts.append(.text(String(decoding: bytes[textStart..<end], as: UTF8.self))) }
        }
        while i + 1 < bytes.count {
            guard bytes[i] == UInt8(ascii: "{"), bytes[i + 1] == UInt8(ascii: "{") else {
                i += 1
                continue
            }
            flush(i)
            let innerStart = i + 2
            var close = innerStart
            while close + 1 < bytes.count, !(bytes[close] == UInt8(ascii: "}") && bytes[close + 1] == UInt8(ascii: "}")) {
                guard close - innerStart < limits.expressionBytesMax else {
                    throw SyntaxError(offset: i, message: "a template is longer than \(limits.expressionBytesMax) bytes, or its {{ is not closed")
                }
                close += 1
            }
            guard close + 1 < bytes.count else {
                throw SyntaxError(offset: i, message: "{{ is not closed", hint: "write {{ inputs.name }} or {{ tasks.id.output.key }}; a literal {{ is {{ \"{{\" }}")
            }
            var parser = ConditionParser(String(decoding: bytes[innerStart..<close], as: UTF8.self), limits: limits)
            parser.skipSpace()
            do {
                if parser.at < parser.bytes.count, parser.bytes[parser.at] == UInt8(ascii: "\"") || parser.bytes[parser.at] == UInt8(ascii: "'") {
                    parts.append(.text(try parser.quoted(parser.bytes[parser.at])))
                } else {
                    parts.append(.reference(try parser.reference()))
                }
            } catch {
                throw SyntaxError(offset: innerStart + error.offset, message: error.message, hint: error.hint)
            }
            parser.skipSpace()
            guard parser.at == parser.bytes.count else {
                throw SyntaxError(offset: innerStart + parser.at, message: "a template holds one reference, not \(parser.describeHere())", hint: "comparisons belong in start_when")
            }
            i = close + 2
            textStart = i
        }
        flush(bytes.count)
        // Adjacent text parts (around a literal) read as one.
        var merged: [Template.Part] = []
        for part in parts {
            if case .text(let b) = part, case .text(let a)? = merged.last {
                merged[merged.count - 1] = .text(a + b)
            } else {
                merged.append(part)
            }
        }
        return Template(parts: merged)
    }

    // MARK: grammar

    private mutating func or() throws(SyntaxError) -> Condition {
        var left = try and()
        while eat("||") { left = .or(left, try and()) }
        return left
    }

    private mutating func and() throws(SyntaxError) -> Condition {
        var left = try unary()
        while eat("&&") { left = .and(left, try unary()) }
        return left
    }

    private mutating func unary() throws(SyntaxError) -> Condition {
        depth += 1
        defer { depth -= 1 }
        guard depth <= limits.expressionDepthMax else {
            throw SyntaxError(offset: at, message: "the condition nests deeper than \(limits.expressionDepthMax)")
        }
        skipSpace()
        if eat("!") { return .not(try unary()) }
        if eat("(") {
            let inner = try or()
            guard eat(")") else { throw SyntaxError(offset: at, message: "expected ) but found \(describeHere())") }
            return inner
        }
        if eat("{{") {
            skipSpace()
            let left = try operand()
            skipSpace()
            var comparison: Condition.Comparison?
            if let op = comparisonOperator() {
                skipSpace()
                comparison = Condition.Comparison(op: op, right: try operand())
            }
            guard eat("}}") else {
                throw SyntaxError(offset: at, message: "expected }} but found \(describeHere())", hint: "a test is {{ a }} or {{ a <op> b }} with one of == != < <= > >=")
            }
            return .test(left, comparison)
        }
        let start = at
        if eat("event:") {
            let task = identifier()
            guard !task.isEmpty else { throw SyntaxError(offset: at, message: "expected a task id after event:", hint: "event:<task>.<state>, e.g. event:build.completed") }
            guard eat(".", skippingSpace: false) else { throw SyntaxError(offset: at, message: "expected .<state> after event:\(task)", hint: "event:\(task).completed") }
            let stateStart = at
            let name = identifier()
            guard let state = TaskState(rawValue: name) else {
                throw SyntaxError(offset: stateStart, message: "unknown task state \"\(name)\"", hint: "one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return .event(task: task, state: state)
        }
        throw SyntaxError(
            offset: start, message: "expected a condition but found \(describeHere())",
            hint: "conditions are event:<task>.<state> or {{ ... }} tests, joined with && || ! and parentheses")
    }

    private mutating func operand() throws(SyntaxError) -> Condition.Operand {
        skipSpace()
        guard at < bytes.count else { throw SyntaxError(offset: at, message: "expected a value but the condition ends") }
        let c = bytes[at]
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { return .literal(.string(Template(parts: [.text(try quoted(c))]))) }
        if c == UInt8(ascii: "-") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) { return .literal(.number(try number())) }
        let save = at
        let word = identifier()
        switch word {
        case "true": return .literal(.bool(true))
        case "false": return .literal(.bool(false))
        case "null": return .literal(.null)
        default:
            at = save
            return .reference(try reference())
        }
    }

    mutating func reference() throws(SyntaxError) -> Reference {
        let start = at
        let head = identifier()
        switch head {
        case "inputs":
            guard eat(".", skippingSpace: false) else { throw SyntaxError(offset: at, message: "expected .<name> after inputs", hint: "{{ inputs.target }}") }
            let name = identifier()
            guard !name.isEmpty else { throw SyntaxError(offset: at, message: "expected an input name after inputs.") }
            return .input(name)
        case "tasks":
            guard eat(".", skippingSpace: false) else { throw SyntaxError(offset: at, message: "expected .<id>.output after tasks", hint: "{{ tasks.fetch.output.files }}") }
            let task = identifier()
            guard !task.isEmpty else { throw SyntaxError(offset: at, message: "expected a task id after tasks.") }
            let outputAt = at
            guard eat(".", skippingSpace: false), identifier() == "output" else {
                throw SyntaxError(offset: outputAt, message: "expected .output after tasks.\(task)", hint: "{{ tasks.\(task).output }} or {{ tasks.\(task).output.<key> }}")
            }
            var path: [String] = []
            while eat(".", skippingSpace: false) {
                let key = identifier()
                guard !key.isEmpty else { throw SyntaxError(offset: at, message: "expected a key after .") }
                path.append(key)
            }
            return .output(task: task, path: path)
        default:
            throw SyntaxError(
                offset: start, message: head.isEmpty ? "expected a reference but found \(describeHere())" : "unknown name \"\(head)\"",
                hint: "references are inputs.<name> or tasks.<id>.output.<path>")
        }
    }

    // MARK: tokens

    mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x09 || bytes[at] == 0x0A || bytes[at] == 0x0D { at += 1 }
    }

    private mutating func eat(_ token: String, skippingSpace: Bool = true) -> Bool {
        if skippingSpace { skipSpace() }
        let t = Array(token.utf8)
        guard at + t.count <= bytes.count, Array(bytes[at..<(at + t.count)]) == t else { return false }
        at += t.count
        return true
    }

    private mutating func comparisonOperator() -> Condition.Operator? {
        for op in [Condition.Operator.le, .ge, .eq, .ne, .lt, .gt] where eat(op.rawValue, skippingSpace: false) { return op }
        return nil
    }

    /// Letters, digits, `_` and `-` (task ids may hold dashes): `WorkflowLimits.isNameByte`.
    private mutating func identifier() -> String {
        let start = at
        while at < bytes.count, WorkflowLimits.isNameByte(bytes[at]) { at += 1 }
        return String(decoding: bytes[start..<at], as: UTF8.self)
    }

    private mutating func number() throws(SyntaxError) -> String {
        let start = at
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        while at < bytes.count, (bytes[at] >= 0x30 && bytes[at] <= 0x39) || bytes[at] == UInt8(ascii: ".") { at += 1 }
        let text = String(decoding: bytes[start..<at], as: UTF8.self)
        guard Double(text) != nil else { throw SyntaxError(offset: start, message: "\"\(text)\" is not a number") }
        return text
    }

    mutating func quoted(_ quote: UInt8) throws(SyntaxError) -> String {
        let start = at
        at += 1
        var out: [UInt8] = []
        while at < bytes.count, bytes[at] != quote {
            if bytes[at] == UInt8(ascii: "\\"), at + 1 < bytes.count { at += 1 }
            out.append(bytes[at])
            at += 1
        }
        guard at < bytes.count else { throw SyntaxError(offset: start, message: "the string is not closed") }
        at += 1
        return String(decoding: out, as: UTF8.self)
    }

    func describeHere() -> String {
        guard at < bytes.count else { return "the end" }
        let end = min(bytes.count, at + 12)
        return "\"\(String(decoding: bytes[at..<end], as: UTF8.self))\""
    }
}
