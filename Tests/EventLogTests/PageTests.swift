import Testing
import TestSupport
@testable import EventLog

struct PageTests {
    @Test func followingNextReadsEveryEventOnceWhileAppendsContinue() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        let s = t.store
        try await s.append((0..<500).map { AppendRequest(type: "t\($0 % 3)") })
        let writer = Task {
            for round in 0..<40 {
                try await s.append((0..<25).map { AppendRequest(type: "late\($0 % 2)", stream: round % 2 == 0 ? "even" : nil) })
            }
        }
        var seen: [EventID] = []
        var cursor: EventID = 0
        let finalID: EventID = 1 + 500 + 40 * 25
        var pages = 0
        while cursor < finalID && pages < 100_000 {
            let page = try s.page(after: cursor, limit: 37)
            seen += page.events.map(\.id)
            #expect(page.next >= cursor && page.next <= page.lastID)
            cursor = page.next
            pages += 1
            if page.events.isEmpty { await Task.yield() }
        }
        try await writer.value
        #expect(seen == Array(1...s.lastID), "every id exactly once, in order")
    }

    @Test func filtersUseIndexesAndCursorsSkipNonMatchingIds() async throws {
        let t = try await TempStore.make(clock: { 1_000 })
        defer { t.remove() }
        let s = t.store
        var batch: [AppendRequest] = []
        for i in 0..<300 {
            batch.append(AppendRequest(type: i % 3 == 0 ? "merge" : "commit", stream: i % 2 == 0 ? "jobs" : nil, timeUnixNano: Int64(i)))
        }
        try await s.append(batch)
        let merges = try s.page(after: 0, limit: 10_000, filter: LogFilter(type: "merge"))
        #expect(merges.events.map(\.id) == stride(from: 1, through: 300, by: 3).map(EventID.init))
        #expect(merges.next == 300)
        let both = try s.page(after: 0, limit: 10_000, filter: LogFilter(type: "merge", stream: "jobs"))
        #expect(both.events.map(\.id) == stride(from: 1, through: 300, by: 6).map(EventID.init))
        let window = try s.page(after: 0, limit: 10_000, filter: LogFilter(since: 100, until: 110))
        #expect(window.events.map(\.timeUnixNano) == Array(100..<110))
        // A scan bound: the page stops after examining 50 ids and says where it got to.
        let bounded = try s.page(after: 0, limit: 10_000, filter: LogFilter(since: 250), scanMax: 50)
        #expect(bounded.events.isEmpty && bounded.next == 50)
        let unknown = try s.page(after: 0, limit: 10, filter: LogFilter(stream: "nope"))
        #expect(unknown.events.isEmpty && unknown.next == 300)
        #expect(try s.page(after: 999, limit: 10).next == 300)
    }

    /// One iterator serves reads in any order: forward steps, jumps far ahead, reads backwards,
    /// and ids outside its range, each answered as `event(_:)` answers it.
    @Test func aReaderAnswersAsPointReadsInAnyOrder() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        try await s.append((1...200).map { AppendRequest(type: "t\($0 % 7)", key: "k\($0)", payload: .members(["n": .int($0)])) })
        var rng = SeededRandom(seed: SeededRandom.seed(#function))
        var order: [EventID] = [10, 11, 12, 13, 40, 41, 39, 150, 151, 9, 0, 500, 12, 100]
        order += (0..<300).map { _ in EventID(rng.next() % 170) }
        try s.withReader(from: 10, through: 150) { reader in
            for id in order {
                let expected = (10...150).contains(id) ? try s.event(id) : nil
                #expect(try reader.event(id) == expected, "id \(id)")
            }
        }
        var walked: [EventID] = []
        try s.forEachEvent(ascending: [3, 5, 80, 199, 200, 201, 900]) { walked.append($0.id) }
        #expect(walked == [3, 5, 80, 199, 200])
    }
}
