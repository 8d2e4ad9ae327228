import Foundation
import BanyanClient
import Yams

/// Reads a YAML workflow definition (docs/WORKFLOWS.md) strictly: every mapping's fields are
/// known ones, every value has its type, every template and `start_when` condition parses, every
/// task id a task names exists, and the tasks' dependencies form no cycle. The first problem is
/// thrown as a `DefinitionError` with its line, column, field path and a hint.
public struct DefinitionParser {
    private let lines: [Substring]
    private let limits: WorkflowLimits
    /// Where each template and condition reference was written, for the checks that need the
    /// whole definition (declared inputs, dependencies) to point at the value itself.
    private let sites = Sites()

    final class Sites {
        struct Site {
            var task: Int
            var reference: Reference
            var node: Node
            var field: String
            /// In a `compensate` step, which may read its own task's output.
            var compensation: Bool
        }
        var all: [Site] = []
        var task = 0
        var compensation = false
    }

    private init(_ text: String, limits: WorkflowLimits) {
        // libyaml's line breaks: \n, \r\n, \r (and Unicode's), so marks and lines agree.
        lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        self.limits = limits
    }

    public static func parse(_ text: String, limits: WorkflowLimits = WorkflowLimits()) throws(DefinitionError) -> WorkflowDefinition {
        let (parser, root) = try compose(text, limits: limits)
        return try parser.workflow(root)
    }

    /// A schedule given on its own (`POST /v1/workflows/{name}/schedules`: JSON, which is YAML),
    /// checked as the `schedule:` of `definition` is; its fields are named `schedule.…` in errors.
    public static func parseSchedule(_ text: String, for definition: WorkflowDefinition?, limits: WorkflowLimits = WorkflowLimits()) throws(DefinitionError) -> Schedule {
        let (parser, root) = try compose(text, limits: limits)
        return try parser.schedule(root, definition)
    }

    private static func compose(_ text: String, limits: WorkflowLimits) throws(DefinitionError) -> (DefinitionParser, Node) {
        guard text.utf8.count <= limits.definitionBytesMax else {
            throw DefinitionError(line: 0, column: 0, field: "", message: "the definition is \(text.utf8.count) bytes, more than \(limits.definitionBytesMax)")
        }
        let parser = DefinitionParser(text, limits: limits)
        if let (line, column) = anchorPosition(text) {
            // Refused before composing: Yams expands every alias, so a few lines could make
            // billions of nodes (or hash them, for complex keys) before any check of ours runs.
            throw DefinitionError(
                line: line, column: column, field: "", message: "YAML anchors and aliases are not supported in definitions",
                hint: "write the value out where it is needed", sourceLine: parser.source(line))
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw parser.yamlError(error)
        } catch {
            throw DefinitionError(line: 0, column: 0, field: "", message: "not YAML: \(error)")
        }
        guard let root else { throw DefinitionError(line: 0, column: 0, field: "", message: "the definition is empty", hint: "a workflow has name, inputs and tasks") }
        return (parser, root)
    }

    static let workflowFields: Set<String> = ["name", "inputs", "tasks", "concurrency", "schedule"]
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
            sites.task = i
            let task = try self.task(node, "tasks[\(i)]", compensation: false)
            if marks[task.id] != nil { throw fail(field(node, "id") ?? node, "tasks[\(i)].id", "task id \"\(task.id)\" is used twice") }
            marks[task.id] = node
            tasks.append(task)
        }
        var concurrency = WorkflowDefinition.concurrencyDefault
        if let c = fields["concurrency"] {
            guard case .number(let text) = Self.scalar(c), let n = Int(text), (1...limits.concurrencyMax).contains(n) else {
                throw fail(c, "concurrency", "concurrency (tasks of one run at once) is 1...\(limits.concurrencyMax)")
            }
            concurrency = n
        }
        var definition = WorkflowDefinition(name: name, inputs: inputs, tasks: tasks, concurrency: concurrency)
        try check(definition, marks: marks, sequence: Array(sequence))
        if let node = fields["schedule"] { definition.schedule = try schedule(node, definition) }
        return definition
    }

    /// `definition`: the workflow whose inputs the schedule's must fit (nil: not checked here).
    private func schedule(_ node: Node, _ definition: WorkflowDefinition?) throws(DefinitionError) -> Schedule {
        let fields = try self.fields(node, "schedule", allowed: ["cron", "timezone", "overlap", "catch_up", "inputs"])
        guard let cronNode = fields["cron"] else { throw fail(node, "schedule.cron", "a schedule needs a cron expression", hint: "cron: \"*/5 * * * *\"") }
        let cronText = try string(cronNode, "schedule.cron")
        let cron: Cron
        do { cron = try Cron(cronText) } catch {
            throw fail(cronNode, "schedule.cron", "\(error)", hint: "minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\" (a sixth field first for seconds)")
        }
        var schedule = Schedule(cron: cron, timezone: TimeZone(identifier: "UTC")!)
        if let z = fields["timezone"] {
            let name = try string(z, "schedule.timezone")
            guard let zone = TimeZone(identifier: name) else { throw fail(z, "schedule.timezone", "unknown time zone \"\(name)\"", hint: "an IANA name such as UTC or Europe/Paris") }
            schedule.timezone = zone
            schedule.timezoneName = name
        }
        if let o = fields["overlap"] {
            let text = try string(o, "schedule.overlap")
            guard let overlap = Schedule.Overlap(rawValue: text) else {
                throw fail(o, "schedule.overlap", "unknown overlap \"\(text)\"", hint: "one of \(Schedule.Overlap.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            schedule.overlap = overlap
        }
        if let c = fields["catch_up"] {
            let text = try string(c, "schedule.catch_up")
            guard let catchUp = Schedule.CatchUp(rawValue: text) else {
                throw fail(c, "schedule.catch_up", "unknown catch_up \"\(text)\"", hint: "one of \(Schedule.CatchUp.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            schedule.catchUp = catchUp
        }
        if let i = fields["inputs"] {
            for (key, _, valueNode) in try pairs(i, "schedule.inputs") {
                let value = try self.value(valueNode, "schedule.inputs.\(key)", depth: 0)
                guard value.references.isEmpty else { throw fail(valueNode, "schedule.inputs.\(key)", "a schedule's inputs cannot hold templates") }
                schedule.inputs[key] = value
            }
        }
        // Every run the clock starts gets these inputs: a required input must be among them.
        if let definition {
            do { _ = try definition.runInputs(schedule.inputs) } catch { throw fail(fields["inputs"] ?? node, "schedule.inputs", "\(error)") }
        }
        return schedule
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
            if compensation, Self.commonTaskFields.contains(key) {
                throw fail(keyNode, "\(field).\(key)", "a compensate step has no \(key)", hint: "it runs when the run fails after its task completed; it takes kind, its kind's fields, inputs, retry and timeout")
            }
            let wrongKind = Self.kindFields.first { $0.value.contains(key) }?.key
            throw fail(
                keyNode, "\(field).\(key)", "unknown field \"\(key)\" for a \(kindName) task",
                hint: wrongKind.map { "\(key) belongs to \($0) tasks" }
                    ?? Suggest.nearest(key, in: allowed.sorted()).map { "did you mean \"\($0)\"?" } ?? "fields here: \(allowed.sorted().joined(separator: ", "))")
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
            sites.compensation = true
            defer { sites.compensation = false }
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
            let run = try list(runNode, field + ".run", countMax: limits.argvMax).map { (n, i) throws(DefinitionError) -> WorkflowValue in
                let v = try value(n, "\(field).run[\(i)]", depth: 0)
                guard case .string = v else {
                    throw fail(n, "\(field).run[\(i)]", "run is a list of strings (argv)", hint: "quote it: \"\(Self.scalarText(n))\"")
                }
                return v
            }
            guard !run.isEmpty else { throw fail(runNode, field + ".run", "run needs at least the program") }
            var env: [String: WorkflowValue] = [:]
            if let e = fields["env"] {
                for (key, keyNode, v) in try pairs(e, field + ".env") {
                    guard Self.isEnvName(key) else { throw fail(keyNode, "\(field).env.\(key)", "\"\(key.prefix(64))\" is not an environment variable name", hint: "letters, digits and _, not starting with a digit") }
                    let value = try value(v, "\(field).env.\(key)", depth: 0)
                    guard case .string = value else { throw fail(v, "\(field).env.\(key)", "environment values are strings") }
                    env[key] = value
                }
            }
            let cwd = try fields["cwd"].map { n throws(DefinitionError) -> WorkflowValue in
                let v = try value(n, field + ".cwd", depth: 0)
                guard case .string = v else { throw fail(n, field + ".cwd", "cwd is a string (a directory)") }
                return v
            }
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
                for (key, keyNode, v) in try pairs(h, field + ".request.headers") {
                    guard !key.isEmpty, key.utf8.allSatisfy(Self.isHeaderNameByte) else {
                        throw fail(keyNode, "\(field).request.headers.\(key)", "\"\(key.prefix(64))\" is not an HTTP header name")
                    }
                    let value = try value(v, "\(field).request.headers.\(key)", depth: 0)
                    guard case .string = value else { throw fail(v, "\(field).request.headers.\(key)", "header values are strings") }
                    headers[key] = value
                }
            }
            let body = try request["body"].map { n throws(DefinitionError) in try value(n, field + ".request.body", depth: 0) }
            var expect: [Int] = []
            if let e = request["expect"] {
                expect = try list(e, field + ".request.expect", countMax: limits.expectedStatusesMax).map { (n, i) throws(DefinitionError) -> Int in
                    guard case .number(let text) = Self.scalar(n), let status = Int(text), (100...599).contains(status) else {
                        throw fail(n, "\(field).request.expect[\(i)]", "a status is 100...599")
                    }
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
            guard case .number(let text) = Self.scalar(m), let n = Int(text), (1...limits.attemptsMax).contains(n) else {
                throw fail(m, field + ".max_attempts", "max_attempts is 1...\(limits.attemptsMax)")
            }
            policy.maxAttempts = n
        }
        if let b = fields["backoff"] {
            let backoff = try self.fields(b, field + ".backoff", allowed: ["initial", "multiplier", "max"])
            if let i = backoff["initial"] { policy.initial = try duration(i, field + ".backoff.initial") }
            if let x = backoff["max"] { policy.max = try duration(x, field + ".backoff.max") }
            if let m = backoff["multiplier"] {
                guard case .number(let text) = Self.scalar(m), let v = Double(text), v >= 1, v <= 100 else {
                    throw fail(m, field + ".backoff.multiplier", "multiplier is a number 1...100")
                }
                policy.multiplier = v
            }
            guard policy.initial <= policy.max else { throw fail(b, field + ".backoff", "initial is longer than max") }
        }
        if let j = fields["jitter"] {
            guard case .bool(let v) = Self.scalar(j) else { throw fail(j, field + ".jitter", "jitter is true or false") }
            policy.jitter = v
        }
        return policy
    }

    // MARK: whole-definition checks

    private func check(_ definition: WorkflowDefinition, marks: [String: Node], sequence: [Node]) throws(DefinitionError) {
        let ids = Set(definition.tasks.map(\.id))
        let sortedIDs = ids.sorted()
        let inputs = Set(definition.inputs.map(\.name))
        for (i, task) in definition.tasks.enumerated() {
            let node = sequence[i]
            let needNodes: [Node]
            if let n = field(node, "needs"), case .sequence(let items) = n { needNodes = Array(items) } else { needNodes = [] }
            for (j, need) in task.needs.enumerated() {
                let at = j < needNodes.count ? needNodes[j] : node
                guard ids.contains(need) else { throw fail(at, "tasks[\(i)].needs[\(j)]", "no task has id \"\(need)\"", hint: Self.didYouMean(need, sortedIDs)) }
                guard need != task.id else { throw fail(at, "tasks[\(i)].needs[\(j)]", "task \(task.id) needs itself") }
            }
            for name in (task.startWhen?.taskReferences ?? []).sorted() where !ids.contains(name) {
                throw fail(field(node, "start_when") ?? node, "tasks[\(i)].start_when", "no task has id \"\(name)\"", hint: Self.didYouMean(name, sortedIDs))
            }
        }
        // Tasks as indexes, dependencies as index lists: linear work below, whatever the shape.
        let index = Dictionary(definition.tasks.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
        let deps = definition.tasks.map { $0.dependencies.compactMap { index[$0] }.sorted() }
        // Cycles: depth first, colouring; the order tasks finish in is a topological order.
        var state = [UInt8](repeating: 0, count: deps.count)  // 1: on the path, 2: done
        var order: [Int] = []
        order.reserveCapacity(deps.count)
        for root in deps.indices where state[root] == 0 {
            var stack: [(task: Int, next: Int)] = [(root, 0)]
            state[root] = 1
            while let top = stack.last {
                if top.next < deps[top.task].count {
                    stack[stack.count - 1].next += 1
                    let dep = deps[top.task][top.next]
                    if state[dep] == 1 {
                        let path = stack.map { definition.tasks[$0.task].id }
                        let from = path.firstIndex(of: definition.tasks[dep].id) ?? 0
                        let cycle = path[from...] + [definition.tasks[dep].id]
                        throw fail(sequence[dep], "tasks[\(dep)]", "the tasks depend on each other in a cycle: \(cycle.joined(separator: " -> "))", hint: "needs and start_when must form a DAG")
                    }
                    if state[dep] == 0 {
                        state[dep] = 1
                        stack.append((dep, 0))
                    }
                } else {
                    state[top.task] = 2
                    order.append(top.task)
                    stack.removeLast()
                }
            }
        }
        // What a task reads must exist before it starts: declared inputs, outputs of tasks it
        // depends on (directly or not). Reachability as one bitset per task, built in
        // topological order: tasks × tasks / 8 bytes (12.5 MB at the 10,000-task limit).
        let words = (deps.count + 63) / 64
        var upstream = [[UInt64]](repeating: [], count: deps.count)
        for t in order {
            var bits = [UInt64](repeating: 0, count: words)
            for d in deps[t] {
                bits[d / 64] |= 1 << UInt64(d % 64)
                for w in 0..<words { bits[w] |= upstream[d][w] }
            }
            upstream[t] = bits
        }
        for site in sites.all {
            let task = definition.tasks[site.task]
            switch site.reference {
            case .input(let name) where !inputs.contains(name):
                throw fail(site.node, site.field, "\(site.reference) is not a declared input", hint: Self.didYouMean(name, inputs.sorted()) ?? "declare it under inputs:")
            case .output(let source, _):
                guard let s = index[source] else { throw fail(site.node, site.field, "\(site.reference) names no task", hint: Self.didYouMean(source, sortedIDs)) }
                if s == site.task {
                    guard site.compensation else { throw fail(site.node, site.field, "\(task.id) reads its own output", hint: "only its compensate step may, after it completed") }
                } else if upstream[site.task][s / 64] & (1 << UInt64(s % 64)) == 0 {
                    throw fail(site.node, site.field, "\(task.id) reads \(site.reference) but does not depend on \(source)", hint: "add \(source) to its needs")
                }
            default: break
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

    /// "did you mean" for a misspelt name (the query language's rule: `Suggest`).
    static func didYouMean(_ name: String, _ known: [String]) -> String? {
        Suggest.nearest(name, in: known).map { "did you mean \"\($0)\"?" }
    }

    // MARK: values

    private func value(_ node: Node, _ field: String, depth: Int) throws(DefinitionError) -> WorkflowValue {
        guard depth <= limits.valueDepthMax else { throw fail(node, field, "the value nests deeper than \(limits.valueDepthMax)") }
        switch node {
        case .scalar(let scalar):
            switch Self.scalar(node) {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .number(let n): return .number(n)
            case .string: return .string(try template(node, scalar, field))
            }
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

    enum Scalar: Equatable {
        case null, bool(Bool), number(String), string(String)
    }

    /// A scalar as YAML 1.2's JSON schema reads it, which is what JSON payloads will hold: only
    /// plain `null`, `~` or nothing is null, only `true`/`false` are booleans, only JSON
    /// numbers are numbers. Everything else is a string (YAML 1.1's `yes`, `on`, `0x1F`, `1_000`
    /// and `.inf` included), and so is anything quoted.
    static func scalar(_ node: Node) -> Scalar {
        guard case .scalar(let scalar) = node else { return .string("") }
        let text = scalar.string
        guard scalar.style == .plain else { return .string(text) }
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: return isJSONNumber(text) ? .number(text) : .string(text)
        }
    }

    static func isJSONNumber(_ text: String) -> Bool {
        var b = Array(text.utf8)[...]
        func digits() -> Int {
            let n = b.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
            b = b.dropFirst(n)
            return n
        }
        if b.first == UInt8(ascii: "-") { b = b.dropFirst() }
        if b.first == UInt8(ascii: "0") {
            b = b.dropFirst()
        } else if digits() == 0 {
            return false
        }
        if b.first == UInt8(ascii: ".") {
            b = b.dropFirst()
            if digits() == 0 { return false }
        }
        if b.first == UInt8(ascii: "e") || b.first == UInt8(ascii: "E") {
            b = b.dropFirst()
            if b.first == UInt8(ascii: "+") || b.first == UInt8(ascii: "-") { b = b.dropFirst() }
            if digits() == 0 { return false }
        }
        return b.isEmpty
    }

    static func scalarText(_ node: Node) -> String {
        if case .scalar(let s) = node { return String(s.string.prefix(64)) }
        return ""
    }

    static func isEnvName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= 0x30 && first <= 0x39), name.utf8.count <= 256 else { return false }
        return name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }
    }

    /// RFC 9110's token characters.
    static func isHeaderNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(c)
    }

    private func template(_ node: Node, _ scalar: Node.Scalar, _ field: String) throws(DefinitionError) -> Template {
        let template: Template
        do {
            template = try ConditionParser.template(scalar.string, limits: limits)
        } catch {
            throw syntax(error, node, scalar, field)
        }
        record(template.references, node, field)
        return template
    }

    private func condition(_ node: Node, _ field: String) throws(DefinitionError) -> Condition {
        guard case .scalar(let scalar) = node, case .string = Self.scalar(node) else { throw fail(node, field, "start_when is a condition written as a string") }
        let condition: Condition
        do {
            condition = try ConditionParser.parse(scalar.string, limits: limits)
        } catch {
            throw syntax(error, node, scalar, field)
        }
        record(condition.references, node, field)
        return condition
    }

    private func record(_ references: [Reference], _ node: Node, _ field: String) {
        for reference in references {
            sites.all.append(Sites.Site(task: sites.task, reference: reference, node: node, field: field, compensation: sites.compensation))
        }
    }

    /// A syntax error inside a scalar, placed at its line and column: exact when the source line
    /// holds the scalar's text as it is (plain, or quoted without escapes, on one line); the
    /// scalar's start otherwise (escapes, folded lines, block scalars). Columns count Unicode
    /// scalars, as libyaml's marks do.
    private func syntax(_ error: SyntaxError, _ node: Node, _ scalar: Node.Scalar, _ field: String) -> DefinitionError {
        let mark = node.mark
        var column = mark?.column ?? 0
        if let mark, mark.line >= 1, mark.line <= lines.count {
            let quote = scalar.style == .singleQuoted || scalar.style == .doubleQuoted ? 1 : 0
            let line = Array(lines[mark.line - 1].unicodeScalars)
            let raw = Array(scalar.string.unicodeScalars)
            let start = mark.column - 1 + quote
            if scalar.style == .plain || quote == 1, start >= 0, start + raw.count <= line.count, Array(line[start..<(start + raw.count)]) == raw {
                let prefix = String(decoding: Array(scalar.string.utf8).prefix(error.offset), as: UTF8.self)
                column += quote + prefix.unicodeScalars.count
            }
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
            if k.string == "<<", k.style == .plain { throw fail(key, field, "YAML merge keys (<<) are not supported in definitions", hint: "write the fields out") }
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
                throw fail(keyNode, path, "unknown field \"\(key)\"", hint: Self.didYouMean(key, allowed.sorted()) ?? "fields here: \(allowed.sorted().joined(separator: ", "))")
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
        guard case .string(let text) = Self.scalar(node), case .scalar = node else { throw fail(node, field, "\(field) must be a string") }
        return text
    }

    private func identifier(_ node: Node, _ field: String) throws(DefinitionError) -> String {
        let text = try string(node, field)
        try checkName(text, node, field)
        return text
    }

    private func checkName(_ text: String, _ node: Node, _ field: String) throws(DefinitionError) {
        let ok = !text.isEmpty && text.utf8.count <= limits.nameBytesMax
            && text.utf8.allSatisfy(WorkflowLimits.isNameByte)
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

    func source(_ line: Int) -> String? {
        guard line >= 1, line <= lines.count else { return nil }
        return String(lines[line - 1])
    }

    private func yamlError(_ error: YamlError) -> DefinitionError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return DefinitionError(line: mark.line, column: mark.column, field: "", message: "invalid YAML: \(problem)", sourceLine: source(mark.line))
        case .duplicatedKeysInMapping(let duplicates, let context):
            // The context's text is the whole document: only its mark is worth showing.
            return DefinitionError(
                line: context.mark.line, column: context.mark.column, field: "",
                message: "the mapping here gives \(duplicates.prefix(3).map { "\"\($0.prefix(64))\"" }.joined(separator: ", ")) twice", sourceLine: source(context.mark.line))
        case .reader(let problem, let offset, _, let yaml):
            let (line, column) = offset.map { Self.position(of: $0, in: yaml) } ?? (0, 0)
            return DefinitionError(line: line, column: column, field: "", message: "invalid YAML: \(problem)", sourceLine: source(line))
        default:
            return DefinitionError(line: 0, column: 0, field: "", message: "invalid YAML")
        }
    }

    /// Line and column (Unicode scalars) of a byte offset.
    static func position(of offset: Int, in text: String) -> (Int, Int) {
        var line = 1
        var column = 1
        var seen = 0
        for scalar in text.unicodeScalars {
            guard seen < offset else { break }
            seen += String(scalar).utf8.count
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }

    /// Where the first anchor (`&name`) is, if any: an `&` where a node starts (at a line's
    /// start, after `- `, `: `, `? `, `[`, `{`, `,`, or after the node's tag), outside quotes,
    /// comments and block scalars. An alias needs an anchor, so none can be expanded then. (Yams
    /// keeps anchors only weakly, so a composed tree no longer shows them: this scan is the check.)
    static func anchorPosition(_ text: String) -> (Int, Int)? {
        var blockIndent: Int?
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let c = Array(line.unicodeScalars)
            let indent = c.prefix { $0 == " " }.count
            if let b = blockIndent {
                if indent > b || c.allSatisfy({ $0 == " " }) { continue }
                blockIndent = nil
            }
            func spaceAfter(_ i: Int) -> Bool { i + 1 >= c.count || c[i + 1] == " " || c[i + 1] == "\t" }
            var nodeStart = true
            var quote: Unicode.Scalar?
            var end = c.count
            var i = 0
            while i < c.count {
                let ch = c[i]
                if let q = quote {
                    if ch == "\\" && q == "\"" {
                        i += 2
                        continue
                    }
                    if ch == q { quote = nil }
                } else if ch == " " || ch == "\t" {
                    // Spaces keep whatever the last token left.
                } else if ch == "#" && (i == 0 || c[i - 1] == " " || c[i - 1] == "\t") {
                    end = i
                    break
                } else if nodeStart && ch == "&" {
                    return (n + 1, i + 1)
                } else if nodeStart && ch == "!" {
                    while i + 1 < c.count, c[i + 1] != " " { i += 1 }  // a tag: the node starts after it
                } else if nodeStart && (ch == "\"" || ch == "'") {
                    quote = ch
                    nodeStart = false
                } else if ch == "[" || ch == "{" || ch == "," || ((ch == "-" || ch == ":" || ch == "?") && spaceAfter(i)) {
                    nodeStart = true
                } else {
                    nodeStart = false
                }
                i += 1
            }
            // A block scalar header (`key: |`, `- >-`): its content is the more indented lines below.
            let content = String(String.UnicodeScalarView(c[..<end]))
            if let last = content.split(separator: " ").last, ["|", "|-", "|+", ">", ">-", ">+"].contains(String(last)) { blockIndent = indent }
        }
        return nil
    }
}
