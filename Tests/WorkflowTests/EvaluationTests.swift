import Testing
@testable import Workflow

/// Conditions and templates against a run's state: what holds, what waits, what a template
/// becomes.
struct EvaluationTests {
    static func text(_ s: String) -> WorkflowValue { .string(Template(parts: s.isEmpty ? [] : [.text(s)])) }

    static let context = RunContext(
        inputs: ["target": text("all"), "limit": .number("10")],
        outputs: [
            "fetch": .object([(key: "files", value: .number("3")), (key: "names", value: .array([text("a.c"), text("b.c")])), (key: "ok", value: .bool(true))]),
            "empty": .object([(key: "files", value: .number("0")), (key: "note", value: text(""))]),
        ],
        states: ["fetch": [.scheduled, .started, .completed], "compile": [.started, .failed, .retrying]])

    static func holds(_ text: String) throws -> Bool {
        try ConditionParser.parse(text, limits: WorkflowLimits()).holds(in: context)
    }

    @Test func conditionsHoldOnStatesAndOutputs() throws {
        let cases: [(String, Bool)] = [
            ("event:fetch.completed", true),
            ("event:compile.completed", false),
            ("event:compile.failed && !event:compile.completed", true),
            ("event:report.started", false),
            ("{{ tasks.fetch.output.files > 0 }}", true),
            ("{{ tasks.fetch.output.files >= 3 }} && {{ tasks.fetch.output.files <= 3 }}", true),
            ("{{ tasks.fetch.output.files == 3.0 }}", true),
            ("{{ tasks.fetch.output.files < inputs.limit }}", true),
            ("{{ tasks.empty.output.files > 0 }}", false),
            ("{{ tasks.fetch.output.names.1 == 'b.c' }}", true),
            ("{{ tasks.fetch.output.names.2 == 'b.c' }}", false),
            ("{{ tasks.fetch.output.ok }}", true),
            ("{{ tasks.fetch.output.ok == true }}", true),
            ("{{ tasks.empty.output.note }}", false),
            ("{{ tasks.empty.output.files }}", false),
            ("{{ inputs.target == \"all\" }}", true),
            ("{{ inputs.target > 'a' }}", true),
            // Different kinds: never equal, never ordered.
            ("{{ tasks.fetch.output.files == '3' }}", false),
            ("{{ tasks.fetch.output.files != '3' }}", true),
            ("{{ tasks.fetch.output.ok > false }}", false),
            // Not there yet: false, so the task waits.
            ("{{ tasks.report.output.code == 200 }}", false),
            ("!{{ tasks.report.output }}", true),
            ("{{ inputs.missing == null }}", false),
        ]
        for (text, expected) in cases {
            #expect(try Self.holds(text) == expected, "\(text)")
        }
    }

    @Test func templatesRenderValuesAndText() throws {
        let limits = WorkflowLimits()
        func render(_ s: String) throws -> WorkflowValue { try ConditionParser.template(s, limits: limits).rendered(in: Self.context) }
        #expect(try render("{{ tasks.fetch.output.files }}") == .number("3"), "a whole-string template keeps the value's type")
        #expect(try render("make {{ inputs.target }} -j{{ tasks.fetch.output.files }}") == Self.text("make all -j3"))
        #expect(try render("names={{ tasks.fetch.output.names }}") == Self.text(#"names=["a.c","b.c"]"#))
        #expect(try render("{{ tasks.fetch.output }}") == Self.context.outputs["fetch"])
        #expect(try render("plain") == Self.text("plain"))
        #expect(try render("") == Self.text(""))
        let missing = try #require(throws: RenderError.self) { try render("{{ tasks.report.output.code }}") }
        #expect(missing.description == "tasks.report.output.code is not there: report has not completed, or its output has no code")
        #expect(throws: RenderError.self) { try render("x {{ inputs.nope }}") }

        let body = WorkflowValue.object([(key: "files", value: try ConditionParser.template("{{ tasks.fetch.output.files }}", limits: limits).rendered(in: Self.context))])
        var json = ""
        body.writeJSON(into: &json)
        #expect(json == #"{"files":3}"#)
        var escaped = ""
        Self.text("a\"b\\c\n\u{1}").writeJSON(into: &escaped)
        #expect(escaped == #""a\"b\\c\n\u0001""#)
    }

    /// The example's report task: it may start once compile completed and fetch found files.
    @Test func theExampleReportTaskWaitsForItsCondition() throws {
        let definition = try DefinitionParser.parse(try DefinitionParserTests.example("nightly-build.yaml"))
        let report = try #require(definition.task("report")?.startWhen)
        var context = RunContext(inputs: ["target": Self.text("all")])
        #expect(!report.holds(in: context))
        context.states["compile"] = [.completed]
        #expect(!report.holds(in: context), "fetch's output is not there yet")
        context.outputs["fetch"] = .object([(key: "files", value: .number("3"))])
        #expect(report.holds(in: context))
        context.outputs["fetch"] = .object([(key: "files", value: .number("0"))])
        #expect(!report.holds(in: context))
    }
}
