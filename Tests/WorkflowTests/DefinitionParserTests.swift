import Foundation
import Testing
@testable import Workflow

/// Workflow definitions: the documented shape parses into what it says, and each kind of bad
/// definition is refused at its line and column, naming the field, with a hint.
struct DefinitionParserTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func example(_ name: String) throws -> String {
        try String(contentsOf: repo.appendingPathComponent("examples/workflows/\(name)"), encoding: .utf8)
    }

    @Test func theDocumentedShapeParses() throws {
        let definition = try DefinitionParser.parse(try Self.example("nightly-build.yaml"))
        #expect(definition.name == "nightly-build")
        #expect(definition.inputs == [InputSpec(name: "target", type: .string, defaultValue: .string(Template(parts: [.text("all")])))])
        #expect(definition.tasks.map(\.id) == ["fetch", "compile", "report", "approve"])

        let fetch = try #require(definition.task("fetch"))
        guard case .shell(let run, let env, let cwd, let output) = fetch.kind else { Issue.record("fetch is \(fetch.kind)"); return }
        #expect(run == [.string(Template(parts: [.text("sh")])), .string(Template(parts: [.text("-c")])), .string(Template(parts: [.text("echo '{\"files\": 3}'")]))])
        #expect(env.isEmpty && cwd == nil && output == .json)
        #expect(fetch.retry == .none && fetch.onFailure == .fail && fetch.dependencies.isEmpty)

        let compile = try #require(definition.task("compile"))
        #expect(compile.needs == ["fetch"])
        #expect(compile.retry == RetryPolicy(maxAttempts: 3, initial: .milliseconds(100), multiplier: 2, max: .seconds(5), jitter: true))
        #expect(compile.timeout == .seconds(600))
        guard case .shell(let compileRun, _, _, _) = compile.kind, case .string(let target) = compileRun[1] else { Issue.record("compile run"); return }
        #expect(target.parts == [.reference(.input("target"))])
        guard case .task(let clean)? = compile.compensate, case .shell(let cleanRun, _, _, _) = clean.kind else { Issue.record("compensate"); return }
        #expect(clean.id == "compile.compensate" && cleanRun.count == 2)

        let report = try #require(definition.task("report"))
        let files = Condition.Operand.reference(.output(task: "fetch", path: ["files"]))
        #expect(report.startWhen == .and(.event(task: "compile", state: .completed), .test(files, .init(op: .gt, right: .literal(.number("0"))))))
        #expect(report.dependencies == ["compile", "fetch"])
        guard case .http(let request) = report.kind else { Issue.record("report is \(report.kind)"); return }
        #expect(request.method == "POST" && request.expect == Array(200...299))
        #expect(request.body == .object([(key: "files", value: .string(Template(parts: [.reference(.output(task: "fetch", path: ["files"]))])))]))

        #expect(definition.task("approve")?.kind == .waitForSignal("approval"))
    }

    @Test func conditionsParseWithPrecedenceAndEveryOperator() throws {
        let limits = WorkflowLimits()
        let c = try ConditionParser.parse("!event:a.failed || event:b.completed && ({{ inputs.n >= 2 }} || {{ tasks.a.output }})", limits: limits)
        #expect(c == .or(
            .not(.event(task: "a", state: .failed)),
            .and(.event(task: "b", state: .completed), .or(.test(.reference(.input("n")), .init(op: .ge, right: .literal(.number("2")))), .test(.reference(.output(task: "a", path: [])), nil)))))
        for op in Condition.Operator.allCases {
            let parsed = try ConditionParser.parse("{{ tasks.x.output.k \(op.rawValue) 'v' }}", limits: limits)
            #expect(parsed == .test(.reference(.output(task: "x", path: ["k"])), .init(op: op, right: .literal(.string(Template(parts: [.text("v")]))))))
        }
        #expect(try ConditionParser.parse("{{ inputs.flag == true }}", limits: limits) == .test(.reference(.input("flag")), .init(op: .eq, right: .literal(.bool(true)))))
        var deep = WorkflowLimits()
        deep.expressionDepthMax = 3
        #expect(try ConditionParser.parse("!!event:a.completed", limits: deep) == .not(.not(.event(task: "a", state: .completed))))
        let tooDeep = try #require(throws: SyntaxError.self) { try ConditionParser.parse("!!!!event:a.completed", limits: deep) }
        #expect(tooDeep.message == "the condition nests deeper than 3")
        let parens = String(repeating: "(", count: 1000) + "event:a.completed" + String(repeating: ")", count: 1000)
        #expect(try #require(throws: SyntaxError.self) { try ConditionParser.parse(parens, limits: limits) }.message == "the condition nests deeper than 64")
    }

    /// A task list around one line under test: the problem must be reported on that line.
    static let base = """
        name: w
        inputs: {target: {type: string}}
        tasks:
          - id: fetch
            kind: shell
            run: ["true"]
          - id: build
            kind: shell
            needs: [fetch]
            run: ["make"]
        """

    struct Case: CustomStringConvertible {
        var yaml: String
        /// The text the caret must point at (its first occurrence on the reported line).
        var at: String
        var field: String
        var message: String
        var hint: String? = nil
        var description: String { message }
    }

    static let cases: [Case] = [
        Case(yaml: base + "\n    colour: red", at: "colour", field: "tasks[1].colour", message: "unknown field \"colour\" for a shell task"),
        Case(yaml: base + "\n    signal: go", at: "signal", field: "tasks[1].signal", message: "unknown field", hint: "signal belongs to wait_for_signal tasks"),
        Case(yaml: base.replacingOccurrences(of: "needs: [fetch]", with: "needs: [fetsh]"), at: "fetsh", field: "tasks[1].needs[0]", message: "no task has id \"fetsh\"", hint: "did you mean \"fetch\"?"),
        Case(yaml: base.replacingOccurrences(of: "run: [\"true\"]", with: "run: [\"true\"]\n    needs: [build]"), at: "id: fetch", field: "tasks[0]", message: "cycle: fetch -> build -> fetch"),
        Case(yaml: base + "\n    start_when: \"event:fetch.done\"", at: "done", field: "tasks[1].start_when", message: "unknown task state \"done\""),
        Case(yaml: base + "\n    start_when: \"event:fetch.completed && {{ tasks.fetch.output.n >> 1 }}\"", at: "> 1 }}", field: "tasks[1].start_when", message: "expected a reference but found \"> 1 }}\""),
        Case(yaml: base.replacingOccurrences(of: "run: [\"make\"]", with: "run: [\"make\", \"{{ input.target }}\"]"), at: "input.target", field: "tasks[1].run[1]", message: "unknown name \"input\""),
        Case(yaml: base.replacingOccurrences(of: "run: [\"make\"]", with: "run: [\"make\", \"{{ inputs.targte }}\"]"), at: "\"{{ inputs.targte }}\"", field: "tasks[1].run[1]", message: "inputs.targte is not a declared input", hint: "did you mean \"target\"?"),
        Case(yaml: base.replacingOccurrences(of: "run: [\"true\"]", with: "run: [\"echo\", \"{{ tasks.build.output }}\"]"), at: "\"{{ tasks.build.output }}\"", field: "tasks[0].run[1]", message: "fetch reads tasks.build.output but does not depend on build"),
        Case(yaml: base + "\n    retry: {max_attempts: 0}", at: "0}", field: "tasks[1].retry.max_attempts", message: "max_attempts is 1...100"),
        Case(yaml: base + "\n    timeout: 10 minutes", at: "10 minutes", field: "tasks[1].timeout", message: "must be a duration"),
        Case(yaml: base.replacingOccurrences(of: "id: build", with: "id: fetch"), at: "fetch", field: "tasks[1].id", message: "task id \"fetch\" is used twice"),
        Case(yaml: base.replacingOccurrences(of: "kind: shell\n    needs", with: "kind: bash\n    needs"), at: "bash", field: "tasks[1].kind", message: "unknown kind \"bash\""),
        Case(yaml: base.replacingOccurrences(of: "{type: string}", with: "{type: string, default: 3}"), at: "3}", field: "inputs.target.default", message: "the default is not a string"),
        Case(yaml: base + "\n    retry: {max_attempts: 2, backof: {initial: 1s}}", at: "backof", field: "tasks[1].retry.backof", message: "unknown field", hint: "did you mean \"backoff\"?"),
        Case(yaml: base + "\n   bad: indentation", at: "bad", field: "", message: "invalid YAML"),
        Case(yaml: base.replacingOccurrences(of: "run: [\"make\"]", with: "run: []"), at: "[]", field: "tasks[1].run", message: "run needs at least the program"),
        Case(yaml: base + "\n    inputs: {x: &big [1, 2]}\n    env: {A: *big}", at: "&big", field: "", message: "anchors and aliases are not supported"),
        Case(yaml: base + "\n    inputs: {x: !!str &a foo, y: *a}", at: "&a", field: "", message: "anchors and aliases are not supported"),
        Case(yaml: base + "\n    inputs:\n      - &a [1, 2]", at: "&a", field: "", message: "anchors and aliases are not supported"),
        Case(yaml: base + "\n    inputs: {a: 1, a: 2}", at: "a: 1", field: "", message: "\"a\" twice"),
        Case(yaml: base + "\n    inputs: {<<: {a: 1}}", at: "<<", field: "tasks[1].inputs", message: "merge keys"),
        Case(yaml: base.replacingOccurrences(of: "run: [\"make\"]", with: "run: [sleep, 10]"), at: "10]", field: "tasks[1].run[1]", message: "run is a list of strings", hint: "quote it: \"10\""),
        Case(yaml: base.replacingOccurrences(of: "run: [\"true\"]", with: "run: [\"echo\", \"{{ tasks.fetch.output }}\"]"), at: "\"{{ tasks.fetch.output }}\"", field: "tasks[0].run[1]", message: "fetch reads its own output"),
        Case(yaml: base + "\n    compensate: {kind: shell, run: [\"undo\"], needs: [fetch]}", at: "needs: [fetch]}", field: "tasks[1].compensate.needs", message: "a compensate step has no needs"),
        Case(yaml: base + "\n    tiemout: 1s", at: "tiemout", field: "tasks[1].tiemout", message: "unknown field", hint: "did you mean \"timeout\"?"),
        Case(yaml: base + "\n    cwd: [a]", at: "[a]", field: "tasks[1].cwd", message: "cwd is a string"),
        Case(yaml: base + "\n    env: {1BAD: x}", at: "1BAD", field: "tasks[1].env.1BAD", message: "not an environment variable name"),
        Case(yaml: base.replacingOccurrences(of: "run: [\"make\"]", with: "run: [\"make\", \"{{ inputs.target\"]"), at: "{{ inputs", field: "tasks[1].run[1]", message: "{{ is not closed"),
        Case(yaml: base + "\n    start_when: \"événement:fetch.done\"", at: "événement", field: "tasks[1].start_when", message: "expected a condition"),
        Case(yaml: base + "\n    start_when: \"event:fetch.completed && \\t{{ nope }}\"", at: "\"event:fetch", field: "tasks[1].start_when", message: "unknown name \"nope\""),
    ]

    @Test(arguments: cases) func badDefinitionsAreRefusedWhereTheProblemIs(_ c: Case) {
        do {
            let parsed = try DefinitionParser.parse(c.yaml)
            Issue.record("accepted: \(parsed.tasks.map(\.id))")
        } catch {
            let lines = c.yaml.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // The line holding the marker (for a multi-line marker, its first line).
            let marker = String(c.at.split(separator: "\n").first ?? "")
            guard error.line >= 1, error.line <= lines.count else { Issue.record("no line: \(error)"); return }
            let line = lines[error.line - 1]
            #expect(line.contains(marker), "line \(error.line) is \"\(line)\", expected the one with \"\(marker)\": \(error)")
            if c.message.contains("invalid YAML") {
                // Where libyaml noticed.
            } else if let range = line.range(of: marker) {
                let expected = line.distance(from: line.startIndex, to: range.lowerBound) + 1
                #expect(error.column == expected, "column \(error.column), expected \(expected): \(error)")
            }
            #expect(error.field == c.field, "\(error)")
            if c.message.hasPrefix("cycle: ") {
                // Either rotation names the same cycle.
                #expect(error.message.contains("fetch -> build -> fetch") || error.message.contains("build -> fetch -> build"), "\(error)")
            } else {
                #expect(error.message.contains(c.message), "\(error)")
            }
            if let hint = c.hint { #expect(error.hint?.contains(hint) == true, "\(error)") }
            #expect(error.description.contains("^"), "the caret display: \(error)")
        }
    }

    @Test func concurrencyIsBoundedPerRun() throws {
        let two = try DefinitionParser.parse("name: w\nconcurrency: 2\ntasks:\n  - {id: a, kind: sleep, duration: 1s}\n")
        #expect(two.concurrency == 2)
        #expect(try DefinitionParser.parse("name: w\ntasks:\n  - {id: a, kind: sleep, duration: 1s}\n").concurrency == 8)
        for bad in ["0", "1001", "two", "1.5"] {
            do {
                _ = try DefinitionParser.parse("name: w\nconcurrency: \(bad)\ntasks:\n  - {id: a, kind: sleep, duration: 1s}\n")
                Issue.record("accepted concurrency \(bad)")
            } catch {
                #expect(error.line == 2 && error.field == "concurrency" && error.message.contains("1...1000"), "\(error)")
            }
        }
    }

    @Test func windowsLineEndingsKeepLinesAndColumns() {
        let crlf = Self.base.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n    colour: red"
        do {
            _ = try DefinitionParser.parse(crlf)
            Issue.record("accepted")
        } catch {
            #expect(error.line == 11 && error.column == 5 && error.sourceLine == "    colour: red", "\(error)")
        }
    }

    @Test func blockScalarsMayHoldWhatLooksLikeAnAnchorAndLiteralBracesAreWritable() throws {
        let yaml = Self.base + """

                env:
                  SCRIPT: |
                    make all
                    &&not-an-anchor
                inputs:
                  fmt: '{{ "{{" }}.State.Running}}'
            """
        let d = try DefinitionParser.parse(yaml)
        #expect(d.tasks[1].inputs["fmt"] == .string(Template(parts: [.text("{{.State.Running}}")])))
        guard case .shell(_, let env, _, _) = d.tasks[1].kind else { Issue.record("kind"); return }
        #expect(env["SCRIPT"] == .string(Template(parts: [.text("make all\n&&not-an-anchor\n")])))
    }

    @Test func yaml11ScalarsAreStringsAndOnlyJSONNumbersAreNumbers() throws {
        let yaml = """
            name: scalars
            inputs:
              a: {type: string, default: yes}
              b: {type: string, default: 0x1F}
              c: {type: string, default: .inf}
              d: {type: number, default: -1.5e3}
              e: {type: string, default: 1_000}
            tasks: [{id: t, kind: shell, run: ["true"]}]
            """
        let d = try DefinitionParser.parse(yaml)
        func text(_ s: String) -> WorkflowValue { .string(Template(parts: [.text(s)])) }
        #expect(d.inputs.map(\.defaultValue) == [text("yes"), text("0x1F"), text(".inf"), .number("-1.5e3"), text("1_000")])
    }

    @Test func aTaskMayReadItsOwnOutputOnlyInItsCompensation() throws {
        let yaml = """
            name: own
            tasks:
              - id: create
                kind: shell
                run: ["create"]
                output: json
                compensate: {kind: shell, run: ["delete", "{{ tasks.create.output.id }}"]}
            """
        #expect(try DefinitionParser.parse(yaml).tasks.count == 1)
    }

    @Test func quotedScalarsStayStringsAndValuesKeepTheirShape() throws {
        let yaml = """
            name: values
            inputs:
              flag: {type: boolean, default: true}
              word: {type: string, default: "true"}
              n: {type: number, default: 1.50}
            tasks:
              - id: call
                kind: http
                request: {url: "https://example.test/x", body: {a: [1, "2", null, false]}, expect: [200, 204]}
            """
        let d = try DefinitionParser.parse(yaml)
        #expect(d.inputs.map(\.defaultValue) == [.bool(true), .string(Template(parts: [.text("true")])), .number("1.50")])
        guard case .http(let r) = d.tasks[0].kind else { Issue.record("kind"); return }
        #expect(r.method == "GET" && r.expect == [200, 204])
        #expect(r.body == .object([(key: "a", value: .array([.number("1"), .string(Template(parts: [.text("2")])), .null, .bool(false)]))]))
    }

    @Test func limitsBoundTheDefinition() throws {
        func refusal(_ yaml: String, _ limits: WorkflowLimits = WorkflowLimits()) throws -> String {
            try #require(throws: DefinitionError.self) { try DefinitionParser.parse(yaml, limits: limits) }.message
        }
        var limits = WorkflowLimits()
        limits.tasksMax = 1
        #expect(try refusal(Self.base, limits) == "2 tasks, more than 1")
        limits = WorkflowLimits()
        limits.definitionBytesMax = 10
        #expect(try refusal(Self.base, limits).hasPrefix("the definition is"))
        limits = WorkflowLimits()
        limits.valueDepthMax = 2
        #expect(try refusal(Self.base + "\n    inputs: {deep: [[[[1]]]]}", limits) == "the value nests deeper than 2")
        limits = WorkflowLimits()
        limits.expressionBytesMax = 8
        #expect(try refusal(Self.base.replacingOccurrences(of: "run: [\"make\"]", with: "run: [\"{{ inputs.target }}\"]"), limits).hasPrefix("a template is longer than 8 bytes"))
        #expect(try refusal("") == "the definition is empty")
        #expect(try refusal("- just a list") == "the definition must be a mapping")
    }

    @Test func backoffGrowsToItsCap() {
        let policy = RetryPolicy(maxAttempts: 6, initial: .milliseconds(100), multiplier: 2, max: .milliseconds(500), jitter: false)
        #expect((1...6).map(policy.backoff(before:)) == [.zero, .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(500), .milliseconds(500)])
    }
}
