import BanyanClient
import Foundation

/// The events of a run (docs/WORKFLOWS.md, "Events"): their types, deterministic keys, streams,
/// causes and payloads, and the way back from the log to `RunState` transitions. Every state
/// change is one event whose key names it exactly, so a retried append is a duplicate and two
/// engines can never record the same transition twice.
public enum RunEvents {
    public static func stream(_ run: String) -> String { "job_events:\(run)" }
    public static func runKey(_ run: String, _ state: String) -> String { "run/\(run)/\(state)" }
    public static func taskKey(_ run: String, _ task: String, attempt: Int, _ state: TaskState) -> String {
        "run/\(run)/task/\(task)/attempt/\(attempt)/\(state.rawValue)"
    }

    /// One event to append.
    public struct Draft: Sendable {
        public var type: String
        public var key: String
        public var stream: String
        public var parentKeys: [String]
        public var payload: WorkflowValue

        /// The event as `POST /v1/events` takes it.
        public var json: WorkflowValue {
            .object([
                (key: "type", value: .text(type)), (key: "key", value: .text(key)), (key: "stream", value: .text(stream)),
                (key: "parent_keys", value: .array(parentKeys.map(WorkflowValue.text))), (key: "payload", value: payload),
            ])
        }
    }

    /// What identifies a run in every payload.
    public struct RunID: Sendable, Hashable {
        public var run: String
        public var workflow: String
        public var version: String

        var members: [(key: String, value: WorkflowValue)] {
            [(key: "run", value: .text(run)), (key: "workflow", value: .text(workflow)), (key: "version", value: .text(version))]
        }
    }

    /// `children`: the definitions its `sub_workflow` tasks name (and theirs), by name, so the
    /// run holds everything an engine needs. `parent`: for a child run, the `started` key of the
    /// parent's attempt that started it (also its cause).
    public static func requested(_ id: RunID, definition: String, inputs: [String: WorkflowValue], children: [String: String] = [:], parent: String? = nil) -> Draft {
        let inputMembers = inputs.keys.sorted().map { (key: $0, value: inputs[$0]!) }
        var members = id.members + [(key: "definition", value: .text(definition)), (key: "inputs", value: .object(inputMembers))]
        if !children.isEmpty { members.append((key: "children", value: .object(children.keys.sorted().map { (key: $0, value: .text(children[$0]!)) }))) }
        if let parent { members.append((key: "parent", value: .text(parent))) }
        return Draft(
            type: "workflow.run.requested", key: runKey(id.run, "requested"), stream: stream(id.run), parentKeys: parent.map { [$0] } ?? [],
            payload: .object(members))
    }

    public static func task(
        _ id: RunID, _ task: String, attempt: Int, _ state: TaskState, causes: [String], extra: [(key: String, value: WorkflowValue)] = []
    ) -> Draft {
        Draft(
            type: "workflow.task.\(state.rawValue)", key: taskKey(id.run, task, attempt: attempt, state), stream: stream(id.run),
            parentKeys: causes,
            payload: .object(id.members + [(key: "task", value: .text(task)), (key: "attempt", value: .number(String(attempt)))] + extra))
    }

    /// A progress report of an attempt (a shell task's `::progress ` line, a swift function's
    /// `progress` call): the k-th of the attempt, keyed `.../attempt/<n>/progress/<k>`, caused by
    /// the attempt's `started`.
    public static func progress(_ id: RunID, _ task: String, attempt: Int, sequence: Int, value: WorkflowValue) -> Draft {
        Draft(
            type: "workflow.task.progress", key: taskKey(id.run, task, attempt: attempt, .progress) + "/\(sequence)", stream: stream(id.run),
            parentKeys: [taskKey(id.run, task, attempt: attempt, .started)],
            payload: .object(id.members + [(key: "task", value: .text(task)), (key: "attempt", value: .number(String(attempt))), (key: "progress", value: value)]))
    }

    /// A compensation step of a completed task: `workflow.task.compensating`, `.compensated` or
    /// `.compensation_failed`, keyed `run/<run>/task/<id>/compensation/<state>`, with
    /// `"compensation": true` in the payload (the decision core does not fold these).
    public static func compensationKey(_ run: String, _ task: String, _ state: String) -> String {
        "run/\(run)/task/\(task)/compensation/\(state)"
    }

    public static func compensation(_ id: RunID, _ task: String, _ state: String, causes: [String], extra: [(key: String, value: WorkflowValue)] = []) -> Draft {
        Draft(
            type: "workflow.task.\(state)", key: compensationKey(id.run, task, state), stream: stream(id.run), parentKeys: causes,
            payload: .object(id.members + [(key: "task", value: .text(task)), (key: "compensation", value: .bool(true))] + extra))
    }

    /// A signal sent to a run (`banyan workflow signal`): one per name, keyed
    /// `run/<run>/signal/<name>`, caused by the run's request; a `wait_for_signal` task's output
    /// is its `payload`.
    public static func signalKey(_ run: String, _ name: String) -> String { "run/\(run)/signal/\(name)" }

    public static func signal(_ id: RunID, _ name: String, payload: WorkflowValue) -> Draft {
        Draft(
            type: "workflow.run.signaled", key: signalKey(id.run, name), stream: stream(id.run), parentKeys: [runKey(id.run, "requested")],
            payload: .object(id.members + [(key: "signal", value: .text(name)), (key: "payload", value: payload)]))
    }

    /// The run's n-th pause (from 1): `now` stops its running attempts too.
    public static func paused(_ id: RunID, _ n: Int, now: Bool) -> Draft {
        Draft(
            type: "workflow.run.paused", key: runKey(id.run, "paused/\(n)"), stream: stream(id.run), parentKeys: [runKey(id.run, "requested")],
            payload: .object(id.members + [(key: "pause", value: .number(String(n))), (key: "now", value: .bool(now))]))
    }

    /// The end of the run's n-th pause.
    public static func resumed(_ id: RunID, _ n: Int) -> Draft {
        Draft(
            type: "workflow.run.resumed", key: runKey(id.run, "resumed/\(n)"), stream: stream(id.run),
            parentKeys: [runKey(id.run, "requested"), runKey(id.run, "paused/\(n)")], payload: .object(id.members + [(key: "pause", value: .number(String(n)))]))
    }

    /// A request to cancel a run (`banyan workflow cancel`), keyed `run/<run>/cancel_requested`.
    public static func cancelRequested(_ id: RunID, reason: String) -> Draft {
        Draft(
            type: "workflow.run.cancel_requested", key: runKey(id.run, "cancel_requested"), stream: stream(id.run), parentKeys: [runKey(id.run, "requested")],
            payload: .object(id.members + [(key: "reason", value: .text(reason))]))
    }

    public static func finished(_ id: RunID, _ state: String, causes: [String], extra: [(key: String, value: WorkflowValue)] = []) -> Draft {
        Draft(type: "workflow.run.\(state)", key: runKey(id.run, state), stream: stream(id.run), parentKeys: causes, payload: .object(id.members + extra))
    }

    /// A run's event read back: its type and payload.
    public struct Recorded: Sendable {
        public var id: UInt64
        public var type: String
        public var key: String?
        public var payload: WorkflowValue
        /// When the server recorded it (Unix nanoseconds; 0 when not read from a page).
        public var timeUnixNano: Int64 = 0
    }

    /// A draft as the log holds it once recorded (its id unknown: 0; its time this engine's
    /// clock unless given), applied by the engine that recorded it without reading it back.
    public static func recorded(_ draft: Draft) -> Recorded {
        recorded(draft, timeUnixNano: Int64(Date().timeIntervalSince1970 * 1e9))
    }

    public static func recorded(_ draft: Draft, timeUnixNano: Int64) -> Recorded {
        Recorded(id: 0, type: draft.type, key: draft.key, payload: draft.payload, timeUnixNano: timeUnixNano)
    }

    /// The transition a recorded task event stands for (nil for run events and states the
    /// decision core does not follow, like compensation).
    public static func transition(_ event: Recorded) -> RunState.Transition? {
        guard event.type.hasPrefix("workflow.task."), let task = event.payload["task"]?.stringValue, event.payload["compensation"] == nil else { return nil }
        switch TaskState(rawValue: String(event.type.dropFirst("workflow.task.".count))) {
        case .scheduled: return .scheduled(task)
        case .started: return .started(task)
        case .completed: return .completed(task, output: event.payload["output"] ?? .null)
        case .failed:
            if event.payload["interrupted"] == .bool(true) { return .interrupted(task) }
            return .failed(task, error: event.payload["error"]?.stringValue ?? "failed")
        case .retrying: return .retrying(task)
        case .cancelled: return .cancelled(task)
        default: return nil
        }
    }

    /// A page of `GET /v1/events` read into events, with `next` and `last_id`.
    public static func page(_ bytes: [UInt8]) throws(JSONText.Error) -> (events: [Recorded], next: UInt64, last: UInt64) {
        let page = try JSONText.parse(bytes)
        var events: [Recorded] = []
        for e in page["events"]?.arrayValue ?? [] {
            guard let id = e["id"].flatMap({ v -> UInt64? in if case .number(let n) = v { UInt64(n) } else { nil } }), let type = e["type"]?.stringValue else { continue }
            var time: Int64 = 0
            if case .number(let n)? = e["time_unix_nano"] { time = Int64(n) ?? 0 }
            events.append(Recorded(id: id, type: type, key: e["key"]?.stringValue, payload: e["payload"] ?? .null, timeUnixNano: time))
        }
        func uint(_ v: WorkflowValue?) -> UInt64 { if case .number(let n)? = v { UInt64(n) ?? 0 } else { 0 } }
        return (events, uint(page["next"]), uint(page["last_id"]))
    }

    /// Where a read of the whole log starts: before its first id (a pruned store holds nothing
    /// below it).
    static func logStart(_ client: BanyanHTTPClient) async throws -> UInt64 {
        let status: WorkflowValue
        do { status = try JSONText.parse(try await client.get(path: "/v1/status")) } catch let e as JSONText.Error { throw Engine.EngineError.log("\(e)") }
        return UInt64(max(status["first_id"]?.intValue ?? 1, 1) - 1)
    }

    /// Reads the events after `after` (of `type`, in `stream`) to the log's end, a page at a
    /// time, handing each page to `each`; returns where a later read goes on from. A cursor a
    /// prune has passed (410) goes on from the log's start instead.
    nonisolated(nonsending) static func readPages(
        _ client: BanyanHTTPClient, after: UInt64, type: String? = nil, stream: String? = nil, limit: Int = 10_000, _ each: ([Recorded]) throws -> Void
    ) async throws -> UInt64 {
        var after = after
        while true {
            let bytes: [UInt8]
            do {
                bytes = try await client.page(after: after, limit: limit, stream: stream, type: type)
            } catch let error as BanyanClientError where error.status == 410 {
                let start = try await logStart(client)
                guard start > after else { throw error }
                after = start
                continue
            }
            let page: (events: [Recorded], next: UInt64, last: UInt64)
            do { page = try Self.page(bytes) } catch { throw Engine.EngineError.log("\(error)") }
            try each(page.events)
            guard page.next > after else { return after }
            after = page.next
            if page.next >= page.last { return after }
        }
    }

    /// The log's last id now (a page asked for beyond the end answers only that).
    static func lastID(_ client: BanyanHTTPClient) async throws -> UInt64 {
        try page(try await client.page(after: UInt64.max >> 1, limit: 1)).last
    }

    /// FNV-1a, 64 bits.
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    /// A short, stable version of a definition's text (FNV-1a, 64 bits, hex).
    public static func version(of definition: String) -> String {
        let hex = String(fnv1a(definition), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
