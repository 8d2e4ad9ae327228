import EventLog
import Foundation
import Synchronization
import Testing

@testable import BanyanServer

/// An SSE stream on a node that truncates a tail it already sent (a rejoining old leader, or a
/// follower that had more than the promoted one) says so with a `truncated` frame and goes on
/// with the new leader's events at the same ids: it never silently skips them.
struct StreamTruncationTests {
    static func open(_ name: String, role: StoreRole) async throws -> (EventStore, String) {
        let path = NSTemporaryDirectory() + "banyan-stream-trunc-\(name)-\(UUID().uuidString.prefix(8))"
        var options = StoreOptions()
        options.durability = .never
        options.role = role
        return (try await EventStore.open(at: path, options: options), path)
    }

    static func ship(from leader: EventStore, to follower: EventStore) throws {
        while true {
            let groups = try leader.shippableGroups(after: follower.lastID, bytesMax: 1 << 16)
            if groups.isEmpty { return }
            for group in groups { try follower.applyShipped(group) }
        }
    }

    static func append(_ store: EventStore, _ type: String, count: Int) async throws {
        for _ in 0..<count { _ = try await store.append([AppendRequest(type: type)]) }
    }

    /// The frames a stream has sent so far, as (id, event name, type in the data).
    final class Frames: Sendable {
        let text = Mutex("")
        var parsed: [(id: UInt64, event: String, data: String)] {
            text.withLock { $0 }.components(separatedBy: "\n\n").compactMap { frame in
                var id: UInt64?
                var event = ""
                var data = ""
                for line in frame.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = UInt64(line.dropFirst(4)) }
                    if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
                    if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
                }
                return id.map { ($0, event, data) }
            }
        }
    }

    static func waitUntil(_ frames: Frames, sees id: UInt64, after count: Int = 0) async throws {
        for _ in 0..<500 {
            if frames.parsed.dropFirst(count).contains(where: { $0.id == id && $0.event == "event" }) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the stream never sent id \(id)")
    }

    @Test func aTruncatedTailIsAnnouncedAndTheNewLeadersEventsFollow() async throws {
        let (a, ap) = try await Self.open("a", role: .leader)
        let (b, bp) = try await Self.open("b", role: .follower)
        let (c, cp) = try await Self.open("c", role: .follower)
        defer {
            for s in [a, b, c] { s.close() }
            for p in [ap, bp, cp] { try? FileManager.default.removeItem(atPath: p) }
        }
        try await Self.append(a, "shared", count: 5)
        try Self.ship(from: a, to: b)
        let shared = b.lastID
        try await Self.append(a, "lost", count: 4)
        try Self.ship(from: a, to: c)  // C has A's tail, which B never got
        let cLast = c.lastID

        let frames = Frames()
        let stopping = Atomic(false)
        var config = ServerConfiguration()
        config.streamHeartbeat = .seconds(60)
        let reader = Task {
            try await EventStream.pump(
                from: 0, filter: LogFilter(), format: .init(greeting: nil, eventName: "event"), store: c, config: config, stopping: stopping
            ) { _, bytes in
                if let bytes { frames.text.withLock { $0 += String(decoding: bytes, as: UTF8.self) } }
            }
        }
        try await Self.waitUntil(frames, sees: cLast)

        _ = try await b.promote(leader: "http://b")
        try await Self.append(b, "new", count: 6)
        let cut = try #require(c.divergence(leaderEnd: b.epochEnd(for: c.epoch)))
        #expect(cut == shared)
        #expect(try c.truncate(after: cut) == Int(cLast - shared))
        let before = frames.parsed.count
        try Self.ship(from: b, to: c)
        try await Self.waitUntil(frames, sees: b.lastID, after: before)
        stopping.store(true, ordering: .relaxed)
        try await reader.value

        let sent = frames.parsed
        let announced = try #require(sent.firstIndex { $0.event == "truncated" }, "no truncated frame")
        #expect(sent[announced].id == shared && sent[announced].data == "{\"after\":\(shared)}")
        // Before it: the old log, every id once, in order; after it: the new leader's, likewise.
        #expect(sent[..<announced].map(\.id) == Array(1...cLast))
        #expect(sent[(announced + 1)...].map(\.id) == Array((shared + 1)...b.lastID))
        #expect(sent[(announced + 1)...].allSatisfy { !$0.data.contains("\"lost\"") })
        #expect(sent[announced + 1].data.contains(EventStore.epochEventType))
        #expect(sent.filter { $0.event == "truncated" }.count == 1)
    }
}
