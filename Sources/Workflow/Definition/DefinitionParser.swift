import BanyanClient
import Yams

/// Reads a YAML workflow definition (docs/WORKFLOWS.md) strictly: every mapping's fields are
/// known ones, every value has its type, every template and `start_when` condition parses, every
/// task id a task names exists, and the tasks' dependencies form no cycle. The first problem is
/// thrown as a `DefinitionError` with its line, column, field path and a hint.
public struct DefinitionParser {
    private let lines: [Substring]
    private let limits: WorkflowLimits

    private init(_ text: String, limits: WorkflowLimits) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        self.limits = limits
    }

    public static func parse(_ text: String, limits: WorkflowLimits = WorkflowLimits()) throws(DefinitionError) -> WorkflowDefinition {
        guard text.utf8.count <= limits.definitionBytesMax else {
            throw DefinitionError(line: 0, column: 0, field: "", message: "the definition is \(text.utf8.count) bytes, more than \(limits.definitionBytesMax)")
        }
        let parser = DefinitionParser(text, limits: limits)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw parser.yamlError(error)
        } catch {
            throw DefinitionError(line: 0, column: 0, field: "", message: "not YAML: \(error)")
        }
        guard let root else { throw DefinitionError(line: 0, column: 0, field: "", message: "the definition is empty", hint: "a workflow has name, inputs and tasks") }
        return try parser.workflow(root)
    }

    static let workflowFields: Set<String> = ["name", "inputs", "tasks"]
    static let commonTaskFields: Set<String> = ["id", "kind", "needs", "start_when", "inputs", "retry", "timeout", "compensate", "on_failure"]
    static let kindFields: [String: Set<String>] = [
        "shell": ["run", "env", "cwd", "output"], "http": ["request"], "sleep": ["duration"], "wait_for_signal": ["signal"],
        "sub_workflow": ["workflow"], "swift": ["function"],
    ]
    static let httpMethods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]

    // MARK: the workflow

    private func workflow(_ root: Node) throws(DefinitionError) -> WorkflowDefinition {
        let fields = try self.fields(root, "", allowed: Self.workflowFields)
        guard let nameNode = fields["name"] else { throw fail(root, "name", "a workflow needs a name") }
        let name = try identifier(nameNode, "name")
        var inputs: [InputSpec] = []
        if let node = fields["inputs"] {
            let entries = try pairs(node, "inputs")
            guard entries.count <= limits.inputsMax else { throw fail(node, "inputs", "\(entries.count) inputs, more than \(limits.inputsMax)") }
            for (key, keyNode, value) in entries { inputs.append(try input(key, keyNode, value)) }
        }
        guard let tasksNode = fields["tasks"] else { throw fail(root, "tasks", "a workflow needs tasks") }
        guard case .sequence(let sequence) = tasksNode, !sequence.isEmpty else {
            throw fail(tasksNode, "tasks", "tasks must be a non-empty list", hint: "tasks:\n    - id: first\n      kind: shell\n      run: [\"true\"]")
        }
        guard sequence.count <= limits.tasksMax else { throw fail(tasksNode, "tasks", "\(sequence.count) tasks, more than \(limits.tasksMax)") }
        var tasks: [TaskSpec] = []
        var marks: [String: Node] = [:]
        for (i, node) in sequence.enumerated() {
            let task = try self.task(node, "tasks[\(i)]", compensation: false)
            if marks[task.id] != nil { throw fail(field(node, "id") ?? node, "tasks[\(i)].id", "task id \"\(task.id)\" is used twice") }
            marks[task.id] = node
            tasks.append(task)
        }
        let definition = WorkflowDefinition(name: name, inputs: inputs, tasks: tasks)
        try check(definition, marks: marks, sequence: Array(sequence))
        return definition
    }

    private func input(_ name: String, _ keyNode: Node, _ node: Node) throws(DefinitionError) -> InputSpec {
        let field = "inputs.\(name)"
        try checkName(name, keyNode, field)
        let fields = try self.fields(node, field, allowed: ["type", "default"])
        var type = InputSpec.ValueType.string
        if let typeNode = fields["type"] {
            let text = try string(typeNode, field + ".type")
            guard let t = InputSpec.ValueType(rawValue: text) else {
                throw fail(typeNode, field + ".type", "unknown type \"\(text)\"", hint: "one of \(InputSpec.ValueType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            type = t
        }
        var defaultValue: WorkflowValue?
        if let d = fields["default"] {
            let value = try self.value(d, field + ".default", depth: 0)
            guard Self.value(value, hasType: type) else { throw fail(d, field + ".default", "the default is not a \(type.rawValue)") }
            guard value.references.isEmpty else { throw fail(d, field + ".default", "a default cannot hold a template") }
            defaultValue = value
        }
        return InputSpec(name: name, type: type, defaultValue: defaultValue)
    }

    static func value(_ value: WorkflowValue, hasType type: InputSpec.ValueType) -> Bool {
        switch (type, value) {
        case (.string, .string), (.number, .number), (.boolean, .bool), (.object, .object), (.array, .array): true
        default: false
        }
    }

    // MARK: a task

    private func task(_ node: Node, _ field: String, compensation: Bool) throws(DefinitionError) -> TaskSpec {
        guard case .mapping = node else { throw fail(node, field, "a task must be a mapping of its fields") }
        let entries = try pairs(node, field)
        let present = Set(entries.map(\.key))
        guard let kindNode = entries.first(where: { $0.key == "kind" })?.value else {
            throw fail(node, field + ".kind", "a task needs a kind", hint: "one of \(TaskKind.names.joined(separator: ", "))")
        }
        let kindName = try string(kindNode, field + ".kind")
        guard let kindFields = Self.kindFields[kindName] else {
            throw fail(kindNode, field + ".kind", "unknown kind \"\(kindName)\"", hint: "one of \(TaskKind.names.joined(separator: ", "))")
        }
        var allowed = Self.commonTaskFields.union(kindFields)
        if compensation { allowed.subtract(["id", "needs", "start_when", "compensate", "on_failure"]) }
        for (key, keyNode, _) in entries where !allowed.contains(key) {
            let wrongKind = Self.kindFields.first { $0.value.contains(key) }?.key
            throw fail(
                keyNode, "\(field).\(key)", "unknown field \"\(key)\" for a \(kindName) task",
                hint: wrongKind.map { "\(key) belongs to \($0) tasks" } ?? "fields here: \(allowed.sorted().joined(separator: ", "))")
        }
        let fields = Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        var id = ""
        if !compensation {
            guard let idNode = fields["id"] else { throw fail(node, field + ".id", "a task needs an id") }
            id = try identifier(idNode, field + ".id")
        }
        var needs: [String] = []
        if let n = fields["needs"] {
            needs = try list(n, field + ".needs", countMax: limits.needsMax).map { (node, i) throws(DefinitionError) in try identifier(node, "\(field).needs[\(i)]") }
        }
        var startWhen: Condition?
        if let s = fields["start_when"] { startWhen = try condition(s, field + ".start_when") }
        var inputs: [String: WorkflowValue] = [:]
        if let i = fields["inputs"] {
            for (key, keyNode, value) in try pairs(i, field + ".inputs") {
                try checkName(key, keyNode, "\(field).inputs.\(key)")
                inputs[key] = try self.value(value, "\(field).inputs.\(key)", depth: 0)
            }
        }
        let retry = try fields["retry"].map { n throws(DefinitionError) in try self.retry(n, field + ".retry") } ?? .none
        let timeout = try fields["timeout"].map { n throws(DefinitionError) in try duration(n, field + ".timeout") }
        var compensate: TaskSpec.Compensation?
        if let c = fields["compensate"] {
            var spec = try task(c, field + ".compensate", compensation: true)
            spec.id = id + ".compensate"
            compensate = .task(spec)
        }
        var onFailure = FailurePolicy.fail
        if let f = fields["on_failure"] {
            let text = try string(f, field + ".on_failure")
            guard let policy = FailurePolicy(rawValue: text) else { throw fail(f, field + ".on_failure", "on_failure is fail or continue, not \"\(text)\"") }
            onFailure = policy
        }
        let kind = try self.kind(kindName, fields, node, field, present: present)
        return TaskSpec(
            id: id, kind: kind, needs: needs, startWhen: startWhen, inputs: inputs, retry: retry, timeout: timeout, compensate: compensate,
            onFailure: onFailure)
    }

    private func kind(_ name: String, _ fields: [String: Node], _ node: Node, _ field: String, present: Set<String>) throws(DefinitionError) -> TaskKind {
        func required(_ key: String, hint: String) throws(DefinitionError) -> Node {
            guard let n = fields[key] else { throw fail(node, "\(field).\(key)", "a \(name) task needs \(key)", hint: hint) }
            return n
        }
        switch name {
        case "shell":
            let runNode = try required("run", hint: "run: [\"make\", \"all\"] (argv, no shell unless you run one)")
            let run = try list(runNode, field + ".run", countMax: 4_096).map { (n, i) throws(DefinitionError) -> WorkflowValue in
                let v = try value(n, "\(field).run[\(i)]", depth: 0)
                guard case .string = v else { throw fail(n, "\(field).run[\(i)]", "run is a list of strings (argv)") }
                return v
            }
            guard !run.isEmpty else { throw fail(runNode, field + ".run", "run needs at least the program") }
            var env: [String: WorkflowValue] = [:]
            if let e = fields["env"] {
                for (key, _, v) in try pairs(e, field + ".env") {
                    let value = try value(v, "\(field).env.\(key)", depth: 0)
                    guard case .string = value else { throw fail(v, "\(field).env.\(key)", "environment values are strings") }
                    env[key] = value
                }
            }
            let cwd = try fields["cwd"].map { n throws(DefinitionError) in try value(n, field + ".cwd", depth: 0) }
            var output = OutputFormat.text
            if let o = fields["output"] {
                let text = try string(o, field + ".output")
                guard let format = OutputFormat(rawValue: text) else { throw fail(o, field + ".output", "output is text or json, not \"\(text)\"") }
                output = format
            }
            return .shell(run: run, env: env, cwd: cwd, output: output)
        case "http":
            let r = try required("request", hint: "request: {method: POST, url: \"http://127.0.0.1:9000/hook\", body: {...}}")
            let request = try self.fields(r, field + ".request", allowed: ["method", "url", "headers", "body", "expect"])
            let method = try request["method"].map { n throws(DefinitionError) in try string(n, field + ".request.method").uppercased() } ?? "GET"
            guard Self.httpMethods.contains(method) else {
                throw fail(request["method"] ?? r, field + ".request.method", "unknown method \(method)", hint: Self.httpMethods.sorted().joined(separator: ", "))
            }
            guard let urlNode = request["url"] else { throw fail(r, field + ".request.url", "an http task needs request.url") }
            let url = try value(urlNode, field + ".request.url", depth: 0)
            guard case .string(let template) = url else { throw fail(urlNode, field + ".request.url", "url is a string") }
            if let literal = template.literal, !(literal.hasPrefix("http://") || literal.hasPrefix("https://")) {
                throw fail(urlNode, field + ".request.url", "url must start with http:// or https://")
            }
            var headers: [String: WorkflowValue] = [:]
            if let h = request["headers"] {
                for (key, _, v) in try pairs(h, field + ".request.headers") { headers[key] = try value(v, "\(field).request.headers.\(key)", depth: 0) }
            }
            let body = try request["body"].map { n throws(DefinitionError) in try value(n, field + ".request.body", depth: 0) }
            var expect: [Int] = []
            if let e = request["expect"] {
                expect = try list(e, field + ".request.expect", countMax: 100).map { (n, i) throws(DefinitionError) -> Int in
                    guard let status = n.int, (100...599).contains(status) else { throw fail(n, "\(field).request.expect[\(i)]", "a status is 100...599") }
                    return status
                }
            }
            return .http(HTTPRequestSpec(method: method, url: url, headers: headers, body: body, expect: expect.isEmpty ? Array(200...299) : expect))
        case "sleep":
            return .sleep(try duration(try required("duration", hint: "duration: 10m"), field + ".duration"))
        case "wait_for_signal":
            return .waitForSignal(try identifier(try required("signal", hint: "signal: approval"), field + ".signal"))
        case "sub_workflow":
            return .subWorkflow(try identifier(try required("workflow", hint: "workflow: <a definition's name>"), field + ".workflow"))
        default:
            return .swift(try identifier(try required("function", hint: "function: <the name a closure was registered under>"), field + ".function"))
        }
    }

    private func retry(_ node: Node, _ field: String) throws(DefinitionError) -> RetryPolicy {
        let fields = try self.fields(node, field, allowed: ["max_attempts", "backoff", "jitter"])
        var policy = RetryPolicy.none
        if let m = fields["max_attempts"] {
            guard let n = m.int, (1...limits.attemptsMax).contains(n) else {
                throw fail(m, field + ".max_attempts", "max_attempts is 1...\(limits.attemptsMax)")
            }
            policy.maxAttempts = n
        }
        if let b = fields["backoff"] {
            let backoff = try self.fields(b, field + ".backoff", allowed: ["initial", "multiplier", "max"])
            if let i = backoff["initial"] { policy.initial = try duration(i, field + ".backoff.initial") }
            if let x = backoff["max"] { policy.max = try duration(x, field + ".backoff.max") }
            if let m = backoff["multiplier"] {
                guard let v = m.float ?? m.int.map(Double.init), v >= 1, v <= 100 else { throw fail(m, field + ".backoff.multiplier", "multiplier is a number 1...100") }
                policy.multiplier = v
            }
            guard policy.initial <= policy.max else { throw fail(b, field + ".backoff", "initial is longer than max") }
        }
        if let j = fields["jitter"] {
            guard case .scalar(let scalar) = j, scalar.style == .plain, let v = j.bool else { throw fail(j, field + ".jitter", "jitter is true or false") }
            policy.jitter = v
        }
        return policy
    }

    // MARK: whole-definition checks

    private func check(_ definition: WorkflowDefinition, marks: [String: Node], sequence: [Node]) throws(DefinitionError) {
        let ids = Set(definition.tasks.map(\.id))
        let inputs = Set(definition.inputs.map(\.name))
        for (i, task) in definition.tasks.enumerated() {
            let node = sequence[i]
            for need in task.needs {
                guard ids.contains(need) else { throw fail(field(node, "needs") ?? node, "tasks[\(i)].needs", "no task has id \"\(need)\"", hint: Self.suggest(need, in: ids)) }
                guard need != task.id else { throw fail(field(node, "needs") ?? node, "tasks[\(i)].needs", "task \(task.id) needs itself") }
            }
            for name in task.startWhen?.taskReferences ?? [] where !ids.contains(name) {
                throw fail(field(node, "start_when") ?? node, "tasks[\(i)].start_when", "no task has id \"\(name)\"", hint: Self.suggest(name, in: ids))
            }
        }
        // Cycles, over needs and the tasks start_when names: depth first, colouring.
        var state: [String: Int] = [:]  // 1: on the path, 2: done
        let byID = Dictionary(definition.tasks.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for task in definition.tasks where state[task.id] == nil {
            var stack: [(id: String, next: [String])] = [(task.id, byID[task.id]!.dependencies.sorted())]
            state[task.id] = 1
            while !stack.isEmpty {
                if let dep = stack[stack.count - 1].next.popLast() {
                    switch state[dep] {
                    case 1?:
                        let path = stack.map(\.id)
                        let cycle = path[(path.firstIndex(of: dep) ?? 0)...] + [dep]
                        throw fail(marks[dep] ?? sequence[0], "tasks", "the tasks depend on each other in a cycle: \(cycle.joined(separator: " -> "))", hint: "needs and start_when must form a DAG")
                    case nil:
                        state[dep] = 1
                        stack.append((dep, byID[dep]!.dependencies.sorted()))
                    default: break
                    }
                } else {
                    state[stack.removeLast().id] = 2
                }
            }
        }
        // What a task reads must exist before it starts: declared inputs, outputs of tasks it depends on.
        var ancestors: [String: Set<String>] = [:]
        func upstream(_ id: String) -> Set<String> {
            if let known = ancestors[id] { return known }
            var seen = Set<String>()
            var work = Array(byID[id]!.dependencies)
            while let next = work.popLast() {
                if seen.insert(next).inserted { work += byID[next]!.dependencies }
            }
            ancestors[id] = seen
            return seen
        }
        for (i, task) in definition.tasks.enumerated() {
            var references = task.inputs.values.flatMap(\.references) + (task.startWhen?.references ?? []) + Self.references(of: task.kind)
            if case .task(let c)? = task.compensate { references += c.inputs.values.flatMap(\.references) + Self.references(of: c.kind) }
            for reference in references {
                switch reference {
                case .input(let name) where !inputs.contains(name):
                    throw fail(sequence[i], "tasks[\(i)]", "\(reference) is not a declared input", hint: Self.suggest(name, in: inputs) ?? "declare it under inputs:")
                case .output(let source, _) where !ids.contains(source):
                    throw fail(sequence[i], "tasks[\(i)]", "\(reference) names no task", hint: Self.suggest(source, in: ids))
                case .output(let source, _) where source != task.id && !upstream(task.id).contains(source) && !(task.startWhen?.taskReferences.contains(source) ?? false):
                    throw fail(sequence[i], "tasks[\(i)]", "\(task.id) reads \(reference) but does not depend on \(source)", hint: "add \(source) to its needs")
                default: break
                }
            }
        }
    }

    static func references(of kind: TaskKind) -> [Reference] {
        switch kind {
        case .shell(let run, let env, let cwd, _): run.flatMap(\.references) + env.values.flatMap(\.references) + (cwd?.references ?? [])
        case .http(let r): r.url.references + r.headers.values.flatMap(\.references) + (r.body?.references ?? [])
        case .sleep, .waitForSignal, .subWorkflow, .swift: []
        }
    }

    /// "did you mean" for a misspelt id: the known one closest by edit distance, if close.
    static func suggest(_ name: String, in known: Set<String>) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var row = Array(0...b.count)
            for (i, ca) in a.enumerated() {
                var previous = row[0]
                row[0] = i + 1
                for (j, cb) in b.enumerated() {
                    let current = row[j + 1]
                    row[j + 1] = min(row[j + 1] + 1, row[j] + 1, previous + (ca == cb ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        guard name.count <= 128 else { return nil }
        var best: (name: String, distance: Int)?
        for candidate in known.sorted() where candidate.count <= 128 {
            let d = distance(Array(name), Array(candidate))
            if best == nil || d < best!.distance { best = (candidate, d) }
        }
        guard let best, best.distance <= max(2, name.count / 3) else { return nil }
        return "did you mean \"\(best.name)\"?"
    }

    // MARK: values

    private func value(_ node: Node, _ field: String, depth: Int) throws(DefinitionError) -> WorkflowValue {
        guard depth <= limits.valueDepthMax else { throw fail(node, field, "the value nests deeper than \(limits.valueDepthMax)") }
        switch node {
        case .scalar(let scalar):
            // Only plain scalars are nulls, booleans and numbers: "true" in quotes is a string.
            if scalar.style == .plain {
                if node.null != nil { return .null }
                if let b = node.bool { return .bool(b) }
                if node.int != nil || node.float != nil { return .number(scalar.string) }
            }
            return .string(try template(node, scalar, field))
        case .sequence(let sequence):
            var items: [WorkflowValue] = []
            for (i, item) in sequence.enumerated() { items.append(try value(item, "\(field)[\(i)]", depth: depth + 1)) }
            return .array(items)
        case .mapping:
            var members: [(key: String, value: WorkflowValue)] = []
            for (key, _, item) in try pairs(node, field) { members.append((key, try value(item, "\(field).\(key)", depth: depth + 1))) }
            return .object(members)
        case .alias:
            throw fail(node, field, "YAML aliases are not supported in definitions")
        }
    }

    private func template(_ node: Node, _ scalar: Node.Scalar, _ field: String) throws(DefinitionError) -> Template {
        do {
            return try ConditionParser.template(scalar.string, limits: limits)
        } catch {
            throw syntax(error, node, scalar, field)
        }
    }

    private func condition(_ node: Node, _ field: String) throws(DefinitionError) -> Condition {
        guard case .scalar(let scalar) = node else { throw fail(node, field, "start_when is a condition written as a string") }
        do {
            return try ConditionParser.parse(scalar.string, limits: limits)
        } catch {
            throw syntax(error, node, scalar, field)
        }
    }

    /// A syntax error inside a scalar, placed at its line and column: exact for a scalar on one
    /// line (plain or quoted), the scalar's start otherwise.
    private func syntax(_ error: SyntaxError, _ node: Node, _ scalar: Node.Scalar, _ field: String) -> DefinitionError {
        let mark = node.mark
        var column = mark?.column ?? 0
        if let mark, !scalar.string.contains("\n"), mark.line >= 1, mark.line <= lines.count {
            let quote = scalar.style == .singleQuoted || scalar.style == .doubleQuoted ? 1 : 0
            let prefix = String(decoding: Array(scalar.string.utf8).prefix(error.offset), as: UTF8.self)
            column += quote + prefix.count
        }
        return DefinitionError(
            line: mark?.line ?? 0, column: column, field: field, message: error.message, hint: error.hint, sourceLine: source(mark?.line ?? 0))
    }

    // MARK: shapes

    private func pairs(_ node: Node, _ field: String) throws(DefinitionError) -> [(key: String, keyNode: Node, value: Node)] {
        guard case .mapping(let mapping) = node else { throw fail(node, field, "\(field.isEmpty ? "the definition" : field) must be a mapping") }
        var seen = Set<String>()
        var result: [(String, Node, Node)] = []
        for (key, value) in mapping {
            guard case .scalar(let k) = key else { throw fail(key, field, "keys are plain names") }
            guard seen.insert(k.string).inserted else { throw fail(key, field.isEmpty ? k.string : "\(field).\(k.string)", "\"\(k.string)\" is given twice") }
            result.append((k.string, key, value))
        }
        return result
    }

    private func fields(_ node: Node, _ field: String, allowed: Set<String>) throws(DefinitionError) -> [String: Node] {
        var fields: [String: Node] = [:]
        for (key, keyNode, value) in try pairs(node, field) {
            guard allowed.contains(key) else {
                let path = field.isEmpty ? key : "\(field).\(key)"
                throw fail(keyNode, path, "unknown field \"\(key)\"", hint: Self.suggest(key, in: allowed) ?? "fields here: \(allowed.sorted().joined(separator: ", "))")
            }
            fields[key] = value
        }
        return fields
    }

    private func list(_ node: Node, _ field: String, countMax: Int) throws(DefinitionError) -> [(Node, Int)] {
        guard case .sequence(let sequence) = node else { throw fail(node, field, "\(field) must be a list") }
        guard sequence.count <= countMax else { throw fail(node, field, "\(sequence.count) entries, more than \(countMax)") }
        return sequence.enumerated().map { ($1, $0) }
    }

    private func string(_ node: Node, _ field: String) throws(DefinitionError) -> String {
        guard case .scalar(let scalar) = node, scalar.style != .plain || (node.null == nil && node.bool == nil && node.int == nil && node.float == nil) else {
            throw fail(node, field, "\(field) must be a string")
        }
        return scalar.string
    }

    private func identifier(_ node: Node, _ field: String) throws(DefinitionError) -> String {
        let text = try string(node, field)
        try checkName(text, node, field)
        return text
    }

    private func checkName(_ text: String, _ node: Node, _ field: String) throws(DefinitionError) {
        let ok = !text.isEmpty && text.utf8.count <= limits.nameBytesMax
            && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2D }
        guard ok else {
            throw fail(node, field, "\"\(text.prefix(64))\" is not a name", hint: "names are 1...\(limits.nameBytesMax) letters, digits, _ and -")
        }
    }

    private func duration(_ node: Node, _ field: String) throws(DefinitionError) -> Duration {
        guard case .scalar(let scalar) = node, let d = Duration.parse(scalar.string), d > .zero else {
            throw fail(node, field, "\(field) must be a duration such as 100ms, 30s, 10m or 1h30m")
        }
        return d
    }

    /// The mapping entry `key` of a task node, for pointing at it.
    private func field(_ node: Node, _ key: String) -> Node? {
        guard case .mapping(let mapping) = node else { return nil }
        return mapping.first { $0.key.string == key }?.value
    }

    private func fail(_ node: Node, _ field: String, _ message: String, hint: String? = nil) -> DefinitionError {
        let mark = node.mark
        return DefinitionError(line: mark?.line ?? 0, column: mark?.column ?? 0, field: field, message: message, hint: hint, sourceLine: source(mark?.line ?? 0))
    }

    private func source(_ line: Int) -> String? {
        guard line >= 1, line <= lines.count else { return nil }
        return String(lines[line - 1].prefix(200))
    }

    private func yamlError(_ error: YamlError) -> DefinitionError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return DefinitionError(line: mark.line, column: mark.column, field: "", message: "invalid YAML: \(problem)", sourceLine: source(mark.line))
        default:
            return DefinitionError(line: 0, column: 0, field: "", message: "invalid YAML: \(error)")
        }
    }
}
