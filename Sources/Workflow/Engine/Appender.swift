import BanyanClient
import Synchronization

/// Gathers the appends of every run an engine drives into shared batches, as a database groups
/// commits: whatever is recorded while earlier batches are in flight goes out together in the
/// next one (at most `batchEventsMax` events and `batchBytesMax` bytes), with at most
/// `inFlightMax` batches in flight. One request, and one durable write on the server, then
/// carries the transitions of many runs. A batch the server refuses for a conflicting key (409)
/// or a bad event (400, 413) is split in halves down to the callers concerned, so each learns
/// which of its own keys were refused and one bad event fails only its own caller.
final class Appender: Sendable {
    static let batchEventsMax = 1_000
    static let batchBytesMax = 4 << 20
    static let inFlightMax = 4

    private struct Pending {
        var drafts: [RunEvents.Draft]
        var json: [String]
        var bytes: Int
        var continuation: CheckedContinuation<Swift.Result<Set<String>, any Error>, Never>
    }

    private struct State {
        var queue: [Pending] = []
        var inFlight = 0
    }

    private let state = Mutex(State())
    /// One append of a JSON array body, retried while the server is out of reach.
    let send: @Sendable ([UInt8]) async throws -> Void
    let log: @Sendable (String) -> Void

    init(send: @escaping @Sendable ([UInt8]) async throws -> Void, log: @escaping @Sendable (String) -> Void) {
        self.send = send
        self.log = log
    }

    /// Appends `drafts` (in one batch with others'); returns the keys refused because the log
    /// holds them with other content.
    func record(_ drafts: [RunEvents.Draft]) async throws -> Set<String> {
        guard !drafts.isEmpty else { return [] }
        let json = drafts.map(\.json.json)
        let bytes = json.reduce(0) { $0 + $1.utf8.count + 1 }
        let result = await withCheckedContinuation { c in
            state.withLock { $0.queue.append(Pending(drafts: drafts, json: json, bytes: bytes, continuation: c)) }
            flush()
        }
        return try result.get()
    }

    /// Sends the next batches while fewer than `inFlightMax` are in flight.
    private func flush() {
        while true {
            let batch = state.withLock { s -> [Pending]? in
                guard s.inFlight < Self.inFlightMax, !s.queue.isEmpty else { return nil }
                var take = 0
                var events = 0
                var bytes = 0
                // At least one caller per batch, however large its own drafts.
                while take < s.queue.count, take == 0 || (events + s.queue[take].drafts.count <= Self.batchEventsMax && bytes + s.queue[take].bytes <= Self.batchBytesMax) {
                    events += s.queue[take].drafts.count
                    bytes += s.queue[take].bytes
                    take += 1
                }
                let batch = Array(s.queue.prefix(take))
                s.queue.removeFirst(take)
                s.inFlight += 1
                return batch
            }
            guard let batch else { return }
            Task {
                await self.deliver(batch[...])
                self.state.withLock { $0.inFlight -= 1 }
                self.flush()
            }
        }
    }

    /// Sends callers' drafts as one batch. One refused key (409), or one bad event (400, 413),
    /// sinks the whole batch: then the halves are sent apart, down to the callers whose own
    /// drafts are refused, so the others' events still go out in few requests.
    private func deliver(_ group: ArraySlice<Pending>) async {
        var body = "["
        body.reserveCapacity(group.reduce(2) { $0 + $1.bytes })
        var first = true
        for pending in group {
            for json in pending.json {
                if !first { body += "," }
                first = false
                body += json
            }
        }
        body += "]"
        do {
            try await send(Array(body.utf8))
            for pending in group { pending.continuation.resume(returning: .success([])) }
        } catch let error as BanyanClientError where [400, 409, 413].contains(error.status) && group.count > 1 {
            let middle = group.startIndex + group.count / 2
            await deliver(group[..<middle])
            await deliver(group[middle...])
        } catch let error as BanyanClientError where error.status == 409 {
            let pending = group[group.startIndex]
            do {
                pending.continuation.resume(returning: .success(try await alone(pending.drafts)))
            } catch {
                pending.continuation.resume(returning: .failure(error))
            }
        } catch {
            for pending in group { pending.continuation.resume(returning: .failure(error)) }
        }
    }

    private func alone(_ drafts: [RunEvents.Draft]) async throws -> Set<String> {
        do {
            try await send(Array(WorkflowValue.array(drafts.map(\.json)).json.utf8))
            return []
        } catch let error as BanyanClientError where error.status == 409 {
            if drafts.count > 1 {
                var refused: Set<String> = []
                for draft in drafts { refused.formUnion(try await alone([draft])) }
                return refused
            }
            log("\(drafts.first?.key ?? "?") was already recorded, with other content (another engine): \(error.detail ?? "")")
            return Set(drafts.map(\.key))
        }
    }
}
