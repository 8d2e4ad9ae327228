import BanyanClient

/// Which engine process drives a run (docs/WORKFLOWS.md, "Several engines"): the one whose
/// claim is the run's latest, `workflow.run.claimed` keyed `run/<run>/claim/<n>`. The log's key
/// uniqueness is the compare-and-set: of two engines claiming claim n, the log keeps one. A
/// claim holds while its engine's heartbeats do (`Liveness`); another engine takes a run whose
/// claimant stopped with the next claim, naming the engine it takes over from.
struct RunClaims: Sendable {
    let engine: Engine

    static func key(_ run: String, _ n: Int) -> String { RunEvents.runKey(run, "claim/\(n)") }

    /// A run taken over this many times is left to `banyan workflow resume` (a bound on the
    /// look-ups below; each takeover needs an engine to stop).
    static let claimsMax = 1_000

    struct Claim: Sendable, Hashable {
        var number: Int
        var engine: String
        /// The engine process that made it (a restarted engine keeps its name, not this).
        var incarnation: String?
    }

    enum Outcome: Sendable, Hashable {
        /// This engine drives it: its claim is the latest (made now, or earlier by this process).
        case mine(takeover: String?)
        /// Another live engine drives it.
        case other(String)
        /// Taken over `claimsMax` times: left to `banyan workflow resume`.
        case abandoned
    }

    /// The run's latest claim, looked up from `from` on (nil: never claimed).
    func latest(_ run: String, from: Int = 1) async throws -> Claim? {
        var found: Claim?
        var n = max(1, from)
        while n <= Self.claimsMax, let bytes = try await engine.client.event(key: Self.key(run, n)) {
            let event: WorkflowValue
            do { event = try JSONText.parse(bytes) } catch { throw Engine.EngineError.log("\(error)") }
            found = Claim(number: n, engine: event["payload"]?["engine"]?.stringValue ?? "", incarnation: event["payload"]?["incarnation"]?.stringValue)
            n += 1
        }
        return found
    }

    /// Claims the run for this engine unless a live engine holds it. `alive` judges the
    /// current claimant.
    /// `known`: the latest claim as just read (`.some(nil)`: none), so it is not read again.
    func acquire(_ run: String, id: RunEvents.RunID, known: Claim?? = nil, alive: (String) async throws -> Bool) async throws -> Outcome {
        var known = known
        var from = 1
        for _ in 0..<8 {
            let current: Claim?
            if let k = known { current = k } else { current = try await latest(run, from: from) }
            known = nil
            if let current {
                if current.engine == engine.engineID, current.incarnation == engine.incarnation { return .mine(takeover: nil) }
                // Its own name from an earlier process is claimed again (not taken as is): an
                // engine that took it over meanwhile must not drive it beside this one.
                if current.engine != engine.engineID, try await alive(current.engine) { return .other(current.engine) }
                guard current.number < Self.claimsMax else { return .abandoned }
            }
            let n = (current?.number ?? 0) + 1
            var extra: [(key: String, value: WorkflowValue)] = [
                (key: "engine", value: .text(engine.engineID)), (key: "incarnation", value: .text(engine.incarnation)), (key: "claim", value: .number(String(n))),
            ]
            if let current { extra.append((key: "takeover_of", value: .text(current.engine))) }
            let draft = RunEvents.Draft(
                type: "workflow.run.claimed", key: Self.key(run, n), stream: RunEvents.stream(run),
                parentKeys: [current.map { Self.key(run, $0.number) } ?? RunEvents.runKey(run, "requested")], payload: .object(id.members + extra))
            // Refused: another engine claimed n first; see who.
            if try await engine.record([draft]).isEmpty { return .mine(takeover: current?.engine) }
            from = n
        }
        throw Engine.EngineError.log("run \(run): its claim kept changing while this engine claimed it")
    }
}
