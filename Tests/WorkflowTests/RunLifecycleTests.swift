import TestSupport
import Testing
@testable import Workflow

/// The run-level fold every view shares, pause interruptions in the decision core, the event
/// shapes of pauses, resumes and claims, and how unclaimed runs spread over engines.
struct RunLifecycleTests {
    static func event(_ type: String, id: UInt64, _ extra: [(key: String, value: WorkflowValue)] = []) -> RunEvents.Recorded {
        RunEvents.Recorded(id: id, type: "workflow.run.\(type)", key: nil, payload: .object([(key: "run", value: .text("r"))] + extra), timeUnixNano: Int64(id))
    }

    static func pause(_ n: Int, id: UInt64) -> RunEvents.Recorded { event("paused", id: id, [(key: "pause", value: .number(String(n)))]) }
    static func resume(_ n: Int, id: UInt64) -> RunEvents.Recorded { event("resumed", id: id, [(key: "pause", value: .number(String(n)))]) }

    static func fold(_ events: [RunEvents.Recorded]) -> RunLifecycle {
        var life = RunLifecycle()
        for e in events { life.apply(e) }
        return life
    }

    @Test func theStateFollowsTheRunLevelEvents() {
        #expect(Self.fold([]).state == .pending)
        #expect(Self.fold([Self.event("started", id: 2)]).state == .running)
        #expect(Self.fold([Self.event("started", id: 2), Self.pause(1, id: 3)]).state == .paused)
        #expect(Self.fold([Self.pause(1, id: 3)]).state == .paused, "paused before any engine started it")
        #expect(Self.fold([Self.pause(1, id: 3), Self.resume(1, id: 4)]).state == .pending)
        #expect(Self.fold([Self.event("started", id: 2), Self.pause(1, id: 3), Self.resume(1, id: 4), Self.pause(2, id: 5)]).state == .paused)
        #expect(Self.fold([Self.pause(1, id: 3), Self.event("cancel_requested", id: 4)]).state == .cancelling, "a cancel goes on while paused")
        let failed = Self.fold([
            Self.event("started", id: 2),
            Self.event("failed", id: 9, [(key: "task", value: .text("t")), (key: "error", value: .text("exit code 1")), (key: "compensations_failed", value: .array([.text("a")]))]),
        ])
        #expect(failed.state == .failed && failed.error == "t: exit code 1 (compensations failed: a)" && failed.endedAtUnixNano == 9 && failed.startedAtUnixNano == 2)
        #expect(Self.fold([Self.event("cancelled", id: 5, [(key: "reason", value: .text("no"))]), Self.pause(1, id: 6)]).state == .cancelled, "an end is final")
    }

    /// The history reads each type on its own, so events arrive in any order across types.
    @Test func theFoldDoesNotDependOnTheOrderEventsArriveIn() {
        let seed = SeededRandom.seed("theFoldDoesNotDependOnTheOrderEventsArriveIn")
        var rng = SeededRandom(seed: seed)
        let histories: [[RunEvents.Recorded]] = [
            [Self.event("started", id: 2), Self.pause(1, id: 3), Self.resume(1, id: 4), Self.pause(2, id: 5)],
            [Self.event("started", id: 2), Self.pause(1, id: 3), Self.event("cancel_requested", id: 4), Self.event("cancelled", id: 8)],
            [Self.event("started", id: 2), Self.pause(1, id: 3), Self.resume(1, id: 4), Self.event("completed", id: 6)],
        ]
        for history in histories {
            let expected = Self.fold(history)
            for _ in 0..<50 {
                var shuffled = history
                shuffled.shuffle(using: &rng)
                #expect(Self.fold(shuffled) == expected, "seed \(seed): \(shuffled.map(\.type))")
            }
        }
    }

    @Test func anInterruptedAttemptRunsAgainAtOnceAndDoesNotCountAgainstMaxAttempts() throws {
        let definition = try DefinitionParser.parse("""
            name: one
            tasks:
              - {id: t, kind: shell, run: ["true"], retry: {max_attempts: 1}}
            """)
        var run = RunState(definition: definition, inputs: [:])
        run.apply(.scheduled("t"))
        run.apply(.started("t"))
        run.apply(.interrupted("t"))
        #expect(run.retryDecision(for: "t") == .retry(attempt: 2, after: .zero))
        #expect(run.outcome == nil && !run.isDone("t"))
        run.apply(.retrying("t"))
        run.apply(.started("t"))
        run.apply(.failed("t", error: "exit code 1"))
        #expect(run.retryDecision(for: "t") == .giveUp, "one real attempt was allowed, and it failed")
        #expect(run.outcome == .failed(task: "t", error: "exit code 1"))
    }

    @Test func pausesResumesAndClaimsAreWrittenAsDocumented() {
        let id = RunEvents.RunID(run: "r1", workflow: "w", version: "v")
        #expect(RunEvents.paused(id, 2, now: true).json.json == #"{"type":"workflow.run.paused","key":"run/r1/paused/2","stream":"job_events:r1","parent_keys":["run/r1/requested"],"payload":{"run":"r1","workflow":"w","version":"v","pause":2,"now":true}}"#)
        #expect(RunEvents.resumed(id, 2).json.json == #"{"type":"workflow.run.resumed","key":"run/r1/resumed/2","stream":"job_events:r1","parent_keys":["run/r1/requested","run/r1/paused/2"],"payload":{"run":"r1","workflow":"w","version":"v","pause":2}}"#)
        let failed = RunEvents.Recorded(id: 9, type: "workflow.task.failed", key: nil, payload: .object([(key: "task", value: .text("t")), (key: "interrupted", value: .bool(true))]))
        #expect(RunEvents.transition(failed) == .interrupted("t"))
        #expect(RunClaims.key("r1", 3) == "run/r1/claim/3")
    }

    @Test func unclaimedRunsSpreadEvenlyAndMoveOnlyWithTheirEngine() {
        let engines = ["e0", "e1", "e2"]
        var counts: [String: Int] = [:]
        var moved = 0
        for i in 0..<3_000 {
            let run = "r\(i)"
            let preferred = EngineService.preferred(run, among: engines)!
            counts[preferred, default: 0] += 1
            // e1 stops: only its runs get another preferred engine.
            let after = EngineService.preferred(run, among: ["e0", "e2"])!
            if preferred != "e1" { #expect(after == preferred) } else { moved += 1 }
        }
        #expect(engines.allSatisfy { (850...1_150).contains(counts[$0] ?? 0) }, "\(counts)")
        #expect(moved == counts["e1"])
    }
}
