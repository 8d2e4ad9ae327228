/// Where a run stands as a whole, folded from its run-level events (docs/WORKFLOWS.md,
/// "Events"): requested (pending) → started (running) ⇄ paused, → cancelling once a cancel is
/// requested, → completed | failed | cancelled. One fold for every view: the run history
/// (`RunIndex`), a run's status (`Engine.status`) and the API. Events may come in any order
/// across types (the history reads each type on its own); the fold gives the same state.
public struct RunLifecycle: Sendable, Hashable {
    public enum State: String, Sendable, CaseIterable {
        /// Requested; no engine has started it yet.
        case pending
        case running
        /// No new attempt starts until it is resumed.
        case paused
        /// Its cancel request is recorded; it has not ended yet.
        case cancelling
        case completed, failed, cancelled

        public var ended: Bool { self == .completed || self == .failed || self == .cancelled }

        /// The state an end event (`workflow.run.completed` ...) gives.
        public init?(endType type: String) {
            guard RunLifecycle.endTypes.contains(type) else { return nil }
            self.init(rawValue: String(type.dropFirst("workflow.run.".count)))
        }
    }

    /// The event types that end a run.
    public static let endTypes = ["workflow.run.completed", "workflow.run.failed", "workflow.run.cancelled"]
    /// Every run-level type the fold follows (besides the request).
    public static let types = ["workflow.run.started", "workflow.run.cancel_requested", "workflow.run.paused", "workflow.run.resumed"] + endTypes

    public private(set) var state = State.pending
    /// The server's times of its start and end.
    public private(set) var startedAtUnixNano: Int64?
    public private(set) var endedAtUnixNano: Int64?
    /// A failed run's task and error, a cancelled run's reason.
    public private(set) var error: String?
    /// Its latest pause and resume (numbered from 1).
    public private(set) var pauses = 0
    public private(set) var resumes = 0
    private var cancelling = false

    public init() {}

    public mutating func apply(_ event: RunEvents.Recorded) {
        switch event.type {
        case "workflow.run.started": startedAtUnixNano = startedAtUnixNano ?? event.timeUnixNano
        case "workflow.run.cancel_requested": cancelling = true
        case "workflow.run.paused": pauses = max(pauses, event.payload["pause"]?.intValue ?? 0)
        case "workflow.run.resumed": resumes = max(resumes, event.payload["pause"]?.intValue ?? 0)
        case _ where Self.endTypes.contains(event.type):
            guard endedAtUnixNano == nil else { return }
            endedAtUnixNano = event.timeUnixNano
            error = Self.endError(event)
            state = State(endType: event.type) ?? .failed
            return
        default: return
        }
        guard !state.ended else { return }
        state = cancelling ? .cancelling : pauses > resumes ? .paused : startedAtUnixNano != nil ? .running : .pending
    }

    /// What a run's end event says went wrong (nil for a completion).
    static func endError(_ event: RunEvents.Recorded) -> String? {
        switch event.type {
        case "workflow.run.cancelled": return event.payload["reason"]?.stringValue
        case "workflow.run.failed":
            // A Swift run records its error whole; a YAML run the task and its error.
            guard let task = event.payload["task"]?.stringValue else { return event.payload["error"]?.stringValue }
            var error = "\(task): \(event.payload["error"]?.stringValue ?? "?")"
            let uncompensated = event.payload["compensations_failed"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if !uncompensated.isEmpty { error += " (compensations failed: \(uncompensated.joined(separator: ", ")))" }
            return error
        default: return nil
        }
    }
}
