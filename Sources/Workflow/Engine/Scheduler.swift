import BanyanClient
import Foundation

/// Starts the runs of scheduled workflows (docs/WORKFLOWS.md, "Schedules"). Each tick is an
/// event, `workflow.schedule.tick` keyed `schedule/<workflow>/tick/<unix seconds>` in the stream
/// `workflow_schedules`, recorded before the run it starts, whose id is derived from the tick
/// (`s-<hash>`): two engines deciding the same tick record one event and one run. Every engine
/// process runs one; each schedules the workflows it is the preferred engine of (the others'
/// once their engine stops), so a schedule is read once per second, not once per engine.
final class Scheduler: @unchecked Sendable {
    // Used by one task only (the engine service's scheduling loop).
    let engine: Engine
    let catalog: DefinitionCatalog
    let runs: RunIndex
    static let stream = "workflow_schedules"

    /// What the ticks recorded so far say, per workflow.
    struct Ticks {
        var last: Int64?
        /// Queued ticks' runs, oldest first, not started yet, with the inputs their tick gave.
        var queued: [(tick: Int64, run: String, inputs: [String: WorkflowValue])] = []
        /// Runs the schedule started and that have not ended, with their inputs.
        var started: [String: [String: WorkflowValue]] = [:]
    }
    private var ticks: [String: Ticks] = [:]
    private var cursor: UInt64?

    init(engine: Engine, views: WorkflowViews) {
        self.engine = engine
        catalog = views.catalog
        runs = views.runs
    }

    static func tickKey(_ workflow: String, _ tick: Int64) -> String { "schedule/\(workflow)/tick/\(tick)" }

    /// The run a tick starts.
    static func runID(_ workflow: String, _ tick: Int64) -> String { "s-" + RunEvents.version(of: "\(workflow)/\(tick)") }

    /// One pass: fires what is due now for the workflows `mine` accepts.
    func pass(now: Date = Date(), mine: (String) -> Bool) async throws {
        let client = engine.client
        let entries = try await catalog.refresh(client)
        // Nothing scheduled: no more reads (an engine without schedules costs one request a pass).
        guard entries.values.contains(where: { !$0.deleted && $0.schedule != nil }) || ticks.values.contains(where: { !$0.queued.isEmpty || !$0.started.isEmpty })
        else { return }
        try await readTicks()
        try await runs.refresh(client)
        // Runs that ended no longer overlap (for every workflow: what another engine fires too,
        // so this memory stays as small as the runs in flight).
        for (name, t) in ticks where !t.started.isEmpty {
            for run in t.started.keys where await runs.summary(run)?.state.ended == true { ticks[name]!.started[run] = nil }
        }
        // Queued ticks run even once their schedule is changed or removed: they were accepted.
        let scheduled = entries.values.filter { !$0.deleted && ($0.schedule != nil || !(ticks[$0.name]?.queued.isEmpty ?? true)) && mine($0.name) }
        for entry in scheduled.sorted(by: { $0.name < $1.name }) {
            do { try await fire(entry, now: now) } catch { engine.log("schedule of \(entry.name): \(error)") }
        }
    }

    private func readTicks() async throws {
        let start: UInt64
        if let cursor { start = cursor } else { start = try await RunEvents.logStart(engine.client) }
        cursor = try await RunEvents.readPages(engine.client, after: start, stream: Self.stream) { events in
            for event in events where event.type == "workflow.schedule.tick" { note(event.payload) }
        }
    }

    private func note(_ payload: WorkflowValue) {
        guard let workflow = payload["workflow"]?.stringValue, let tick = payload["tick"]?.intValue.map(Int64.init), let run = payload["run"]?.stringValue else { return }
        var t = ticks[workflow] ?? Ticks()
        t.last = max(t.last ?? tick, tick)
        var inputs: [String: WorkflowValue] = [:]
        if case .object(let members)? = payload["inputs"] { for (k, v) in members { inputs[k] = v } }
        switch payload["action"]?.stringValue {
        case "started": t.started[run] = inputs
        case "queued": if !t.queued.contains(where: { $0.run == run }) { t.queued.append((tick, run, inputs)) }
        default: break
        }
        ticks[workflow] = t
    }

    private func fire(_ entry: DefinitionCatalog.Entry, now: Date) async throws {
        guard let latest = entry.latest else { return }
        var t = ticks[entry.name] ?? Ticks()
        // A queued tick whose run exists was started (here before a restart, or by another engine).
        for q in t.queued where await runs.summary(q.run) != nil {
            t.started[q.run] = q.inputs
            t.queued.removeAll { $0.run == q.run }
        }
        // Ticks recorded as started whose request is missing (the engine stopped in between).
        for (run, inputs) in t.started where await runs.summary(run) == nil {
            do { try await start(entry, latest, inputs: inputs, run: run) } catch { engine.log("schedule of \(entry.name): starting run \(run): \(error)") }
        }
        // A queued tick starts once nothing of the schedule runs.
        if t.started.isEmpty, let next = t.queued.first {
            t.queued.removeFirst()
            t.started[next.run] = next.inputs  // before the start: a failed start is retried next pass
            ticks[entry.name] = t
            try await start(entry, latest, inputs: next.inputs, run: next.run)
            return
        }
        ticks[entry.name] = t
        guard let schedule = entry.schedule else { return }
        // Due ticks since the last recorded (or since the schedule is in force).
        let nowSeconds = Int64(now.timeIntervalSince1970)
        // From the last tick recorded, but never before the schedule came into force.
        var from = Date(timeIntervalSince1970: Double(max(t.last ?? 0, entry.scheduleSinceUnixNano / 1_000_000_000)))
        var due: [Int64] = []
        var steps = 0
        while let next = schedule.cron.next(after: from, in: schedule.timezone), Int64(next.timeIntervalSince1970) <= nowSeconds {
            due.append(Int64(next.timeIntervalSince1970))
            if due.count > Schedule.catchUpMax { due.removeFirst() }
            from = next
            steps += 1
            // A per-second schedule after a long stop: only the last hour's ticks matter.
            if steps == Self.stepsMax { from = max(from, now.addingTimeInterval(-3_600)) }
            if steps > Self.stepsMax * 2 { break }
        }
        let lateMax = Int64(Schedule.lateMax.components.seconds)
        let onTime = due.filter { nowSeconds - $0 <= lateMax }
        let missed = due.filter { nowSeconds - $0 > lateMax }
        let fired: [Int64]
        switch schedule.catchUp {
        case .none: fired = onTime
        case .last: fired = (missed.last.map { [$0] } ?? []) + onTime
        case .all: fired = Array((missed + onTime).suffix(Schedule.catchUpMax))
        }
        // Missed ticks that fire nothing still move the schedule on.
        if fired.isEmpty, let last = missed.last { ticks[entry.name, default: Ticks()].last = last }
        for tick in fired {
            let run = Self.runID(entry.name, tick)
            let running = !(ticks[entry.name]?.started.isEmpty ?? true) || !(ticks[entry.name]?.queued.isEmpty ?? true)
            var action = "started"
            switch schedule.overlap {
            case .allow: break
            case .skip: if running { action = "skipped" }
            case .queue: if running { action = (ticks[entry.name]?.queued.count ?? 0) < Schedule.queuedMax ? "queued" : "skipped" }
            }
            let draft = RunEvents.Draft(
                type: "workflow.schedule.tick", key: Self.tickKey(entry.name, tick), stream: Self.stream, parentKeys: [],
                payload: .object([
                    (key: "workflow", value: .text(entry.name)), (key: "version", value: .number(String(latest.number))), (key: "tick", value: .number(String(tick))),
                    (key: "at", value: .text(Date(timeIntervalSince1970: Double(tick)).formatted(.iso8601))), (key: "action", value: .text(action)),
                    (key: "run", value: .text(run)), (key: "inputs", value: .object(schedule.inputs.keys.sorted().map { (key: $0, value: schedule.inputs[$0]!) })),
                    (key: "engine", value: .text(engine.engineID)),
                ]))
            // Refused: another engine recorded this tick (perhaps deciding otherwise); the log's is read next pass.
            guard try await engine.record([draft]).isEmpty else { continue }
            note(draft.payload)
            if action == "started" {
                do { try await start(entry, latest, inputs: schedule.inputs, run: run) } catch { engine.log("schedule of \(entry.name): starting run \(run): \(error)") }
            }
            engine.log("schedule of \(entry.name): tick \(Date(timeIntervalSince1970: Double(tick)).formatted(.iso8601)) \(action)\(action == "skipped" ? "" : " run \(run)")")
        }
    }

    /// Bounds the ticks computed in one pass.
    static let stepsMax = 10_000

    /// Records the run's request (the same run id for the same tick: a retry is the same run).
    private func start(_ entry: DefinitionCatalog.Entry, _ version: DefinitionCatalog.Version, inputs: [String: WorkflowValue], run: String) async throws {
        let text = try await catalog.definition(entry.name, version: version.number, engine.client)
        let children = try await catalog.children(of: text, engine.client)
        do {
            _ = try await engine.start(definition: text, inputs: inputs, run: run, children: children)
        } catch Engine.EngineError.runExists {
            // Started already (by another engine, or before this one restarted).
        }
    }
}
