import Testing
@testable import Workflow

/// The engine's decisions as a pure function of a run's transitions: readiness through a DAG,
/// retries under the policy, skips, outcomes and the compensation order.
struct RunStateTests {
    static func definition(_ yaml: String) throws -> WorkflowDefinition { try DefinitionParser.parse(yaml) }

    static let diamond = """
        name: diamond
        tasks:
          - {id: a, kind: shell, run: ["true"], output: json, compensate: {kind: shell, run: ["undo-a"]}}
          - {id: b, kind: shell, needs: [a], run: ["echo", "{{ tasks.a.output.n }}"], compensate: {kind: shell, run: ["undo-b"]}}
          - {id: c, kind: shell, needs: [a], run: ["true"], retry: {max_attempts: 3, backoff: {initial: 1s, multiplier: 3, max: 5s}}}
          - {id: d, kind: shell, needs: [b, c], run: ["true"]}
        """

    @Test func aDiamondRunsInDependencyOrderAndCompletes() throws {
        var run = RunState(definition: try Self.definition(Self.diamond), inputs: [:])
        #expect(run.ready == ["a"])
        run.apply(.scheduled("a"))
        run.apply(.started("a"))
        #expect(run.ready.isEmpty && run.outcome == nil)
        run.apply(.completed("a", output: .object([(key: "n", value: .number("7"))])))
        #expect(run.ready == ["b", "c"])
        for id in ["b", "c"] {
            run.apply(.scheduled(id))
            run.apply(.started(id))
        }
        run.apply(.completed("c", output: .null))
        #expect(run.ready.isEmpty, "d still needs b")
        run.apply(.completed("b", output: .null))
        #expect(run.ready == ["d"])
        run.apply(.scheduled("d"))
        run.apply(.started("d"))
        run.apply(.completed("d", output: .null))
        #expect(run.outcome == .completed)
        #expect(run.completionOrder == ["a", "c", "b", "d"])
        #expect(run.compensationOrder == ["b", "a"], "latest completion first, only tasks with a compensate step")
        // A second completed event for the same task (a retried append) changes nothing.
        run.apply(.completed("a", output: .null))
        #expect(run.completionOrder == ["a", "c", "b", "d"] && run.context.outputs["a"] == .object([(key: "n", value: .number("7"))]))
    }

    @Test func failedAttemptsAreRetriedUnderThePolicyThenFailTheRun() throws {
        var run = RunState(definition: try Self.definition(Self.diamond), inputs: [:])
        for t in [RunState.Transition.scheduled("a"), .started("a"), .completed("a", output: .null), .scheduled("c"), .started("c"), .failed("c", error: "exit 1")] {
            run.apply(t)
        }
        #expect(run.retryDecision(for: "c") == .retry(attempt: 2, after: .seconds(1)))
        #expect(run.outcome == nil && !run.isDone("c"))
        run.apply(.retrying("c"))
        run.apply(.started("c"))
        run.apply(.failed("c", error: "exit 1"))
        #expect(run.retryDecision(for: "c") == .retry(attempt: 3, after: .seconds(3)))
        run.apply(.retrying("c"))
        run.apply(.started("c"))
        run.apply(.failed("c", error: "exit 2"))
        #expect(run.retryDecision(for: "c") == .giveUp)
        #expect(run.outcome == .failed(task: "c", error: "exit 2"))
        #expect(run.ready.isEmpty, "nothing new starts once the run has failed")
        #expect(run.compensationOrder == ["a"])
        #expect(run.tasks["c"]?.attempts == 3)
    }

    @Test func continueOnFailureSkipsWhatNeedsTheTaskAndTheRunCompletes() throws {
        let yaml = """
            name: partial
            tasks:
              - {id: a, kind: shell, run: ["false"], on_failure: continue}
              - {id: b, kind: shell, needs: [a], run: ["true"]}
              - {id: c, kind: shell, needs: [b], run: ["true"]}
              - {id: d, kind: shell, run: ["true"]}
            """
        var run = RunState(definition: try Self.definition(yaml), inputs: [:])
        #expect(run.ready == ["a", "d"])
        for t in [RunState.Transition.scheduled("a"), .started("a"), .failed("a", error: "exit 1"), .scheduled("d"), .started("d"), .completed("d", output: .null)] {
            run.apply(t)
        }
        run.settle()
        #expect(run.tasks["b"]?.skipped == "a failed" && run.tasks["c"]?.skipped == "b was skipped")
        #expect(run.outcome == .completed)
    }

    @Test func startWhenWaitsForItsConditionAndIsSkippedWhenItCanNoLongerHold() throws {
        let yaml = """
            name: etl
            inputs: {min: {type: number, default: 1}}
            tasks:
              - {id: extract, kind: shell, run: ["true"], output: json}
              - {id: load, kind: shell, start_when: "event:extract.completed && {{ tasks.extract.output.rows >= inputs.min }}", run: ["true"]}
              - {id: alert, kind: shell, start_when: "event:extract.failed", run: ["true"]}
            """
        let definition = try Self.definition(yaml)
        var run = RunState(definition: definition, inputs: [:])
        #expect(run.ready == ["extract"])
        run.apply(.scheduled("extract"))
        run.apply(.started("extract"))
        run.settle()
        #expect(run.ready.isEmpty && run.tasks["alert"]?.skipped == nil)
        run.apply(.completed("extract", output: .object([(key: "rows", value: .number("5"))])))
        run.settle()
        #expect(run.ready == ["load"])
        #expect(run.tasks["alert"]?.skipped == "its start_when does not hold and can no longer change")

        var empty = RunState(definition: definition, inputs: ["min": .number("10")])
        for t in [RunState.Transition.scheduled("extract"), .started("extract"), .completed("extract", output: .object([(key: "rows", value: .number("5"))]))] {
            empty.apply(t)
        }
        empty.settle()
        #expect(empty.ready.isEmpty && empty.tasks["load"]?.skipped != nil)
        #expect(empty.outcome == .completed)
    }

    @Test func runInputsAreCheckedAgainstTheirDeclarations() throws {
        let definition = try Self.definition("""
            name: inputs
            inputs: {target: {type: string}, jobs: {type: number, default: 2}}
            tasks: [{id: a, kind: shell, run: ["make", "{{ inputs.target }}"]}]
            """)
        let target = WorkflowValue.string(Template(parts: [.text("all")]))
        #expect(try definition.runInputs(["target": target]) == ["target": target, "jobs": .number("2")])
        #expect(throws: InputError(input: "target", message: "is required (it has no default)")) { try definition.runInputs([:]) }
        #expect(throws: InputError(input: "jobs", message: "must be a number")) { try definition.runInputs(["target": target, "jobs": target]) }
        #expect(throws: InputError.self) { try definition.runInputs(["target": target, "colour": target]) }
    }

    /// The same transitions give the same decisions: what lets any engine rebuild a run from
    /// its events after a crash.
    @Test func replayingTheSameTransitionsGivesTheSameDecisions() throws {
        let definition = try Self.definition(Self.diamond)
        let transitions: [RunState.Transition] = [
            .scheduled("a"), .started("a"), .completed("a", output: .null), .scheduled("b"), .scheduled("c"), .started("c"),
            .failed("c", error: "x"),
        ]
        var first = RunState(definition: definition, inputs: [:])
        var second = RunState(definition: definition, inputs: [:])
        for t in transitions { first.apply(t) }
        for t in transitions { second.apply(t) }
        #expect(first.ready == second.ready && first.outcome == second.outcome && first.tasks == second.tasks)
        #expect(first.retryDecision(for: "c") == .retry(attempt: 2, after: .seconds(1)))
        #expect(first.ready.isEmpty, "b is scheduled, c waits for its retry")
    }

    @Test func aCompletedTaskStaysCompletedWhateverComesAfter() throws {
        var run = RunState(definition: try Self.definition(Self.diamond), inputs: [:])
        run.apply(.scheduled("a"))
        run.apply(.started("a"))
        run.apply(.completed("a", output: .number("1")))
        // Another engine took the attempt for stopped and recorded its failure after the
        // completion; then a late `scheduled`: neither moves the task back.
        run.apply(.failed("a", error: "the engine stopped during this attempt"))
        run.apply(.scheduled("a"))
        run.apply(.completed("a", output: .number("2")))
        #expect(run.tasks["a"]?.state == .completed && run.tasks["a"]?.attempts == 1)
        #expect(run.context.outputs["a"] == .number("1"), "the first completion decides the output")
        #expect(run.completionOrder == ["a"] && run.ready == ["b", "c"])
        // `scheduled` after an attempt started is ignored too.
        run.apply(.scheduled("b"))
        run.apply(.started("b"))
        run.apply(.scheduled("b"))
        #expect(run.tasks["b"]?.state == .started)
    }
}
