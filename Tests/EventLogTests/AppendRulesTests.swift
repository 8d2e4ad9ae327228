import Synchronization
import Testing
import TestSupport
@testable import EventLog

struct AppendRulesTests {
    @Test func idsAreDenseFromOneAndParentsMustExist() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        let a = try await s.append([AppendRequest(type: "a")]).results[0]
        let b = try await s.append([AppendRequest(type: "b", parents: [a.id])]).results[0]
        #expect(a.id == 1 && b.id == 2)
        await #expect(throws: LogError.self) { try await s.append([AppendRequest(type: "c", parents: [3])]) }
        // A rejected event consumes no id.
        let c = try await s.append([AppendRequest(type: "c", parents: [2, 1])]).results[0]
        #expect(c.id == 3)
        #expect(try s.event(3)?.parents == [2, 1])
    }

    /// The callback-taking append (the event loop's `/emit`): batches commit in the order of
    /// the calls and, within a call, of the list, so an event may name the id the batch before it
    /// will get; each callback runs once; a refusal completes before the call returns.
    @Test func appendsWithACallbackCommitInTheOrderOfTheirCalls() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        let results = Mutex<[Int: [Result<AppendReceipt, any Error>]]>([:])
        let count = 300
        for call in stride(from: 0, to: count, by: 7) {
            // Seven batches per call; every tenth names a parent that will never exist: refused,
            // it takes no id.
            s.append((call..<min(call + 7, count)).map { i in
                let parents: [EventID] = i % 10 == 9 ? [1_000_000] : (i == 0 ? [] : [EventID(i - i / 10)])
                return AppendBatch([AppendRequest(type: "cb", parents: parents)]) { result in results.withLock { $0[i, default: []].append(result) } }
            })
        }
        for _ in 0..<1_000 where results.withLock({ $0.count }) < count { try await Task.sleep(for: .milliseconds(10)) }
        // A callback run twice would come after the last first one: give it the time of a few commits.
        try await Task.sleep(for: .milliseconds(200))
        let all = results.withLock { $0 }
        #expect(all.count == count && all.values.allSatisfy { $0.count == 1 }, "every callback once")
        var next: EventID = 1
        for i in 0..<count {
            switch all[i]?.first {
            case .success(let receipt)?:
                #expect(i % 10 != 9 && receipt.results[0].id == next, "call \(i)")
                if i > 0 { #expect(try s.event(next)?.parents == [next - 1]) }
                next += 1
            case .failure(let error)?:
                #expect(i % 10 == 9, "call \(i): \(error)")
            case nil:
                Issue.record("call \(i) never completed")
            }
        }
        #expect(s.lastID == next - 1)
        s.close()
        let refused = Mutex<(any Error)?>(nil)
        s.append([AppendBatch([AppendRequest(type: "late")]) { result in
            if case .failure(let error) = result { refused.withLock { $0 = error } }
        }])
        #expect((refused.withLock { $0 } as? LogError)?.code == .closed)
    }

    @Test func parentsDropZeroAndRepeatsKeepingOrder() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        try await s.append([AppendRequest(type: "x"), AppendRequest(type: "y"), AppendRequest(type: "z")])
        let id = try await s.append([AppendRequest(type: "m", parents: [3, 0, 1, 3, 2, 1])]).results[0].id
        #expect(try s.event(id)?.parents == [3, 1, 2])
        #expect(try s.children(of: 1) == [id])
    }

    @Test func shapeRulesNameTheField() async throws {
        var limits = Limits()
        limits.payloadBytesMax = 64
        limits.parentsPerEventMax = 2
        let t = try await TempStore.make(limits: limits)
        defer { t.remove() }
        let s = t.store
        try await s.append([AppendRequest(type: "root")])
        let cases: [(AppendRequest, String)] = [
            (AppendRequest(type: ""), "type"),
            (AppendRequest(type: String(repeating: "t", count: 257)), "type"),
            (AppendRequest(type: "p", payload: .string(String(repeating: "x", count: 100))), "payload"),
            (AppendRequest(type: "p", parents: [1, 1, 1]), "parents"),
            (AppendRequest(type: "k", key: ""), "key"),
            (AppendRequest(type: "s", stream: ""), "stream"),
            (AppendRequest(type: "pk", parentKeys: ["missing"]), "parent_keys"),
        ]
        for (request, field) in cases {
            do {
                try await s.append([request])
                Issue.record("accepted an invalid event for field \(field)")
            } catch let error as LogError {
                #expect(error.field == field, "\(error)")
                #expect(error.index == 0)
            }
        }
        #expect(s.lastID == 1)
    }

    @Test func knownKeyReturnsOriginalIdAndConflictingContentIsRefused() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        let first = try await s.append([AppendRequest(type: "job", key: "k1", payload: .object([JSONMember(key: "n", value: .number("1"))]))])
        #expect(first.results == [AppendResult(id: 1, duplicate: false)])
        let again = try await s.append([AppendRequest(type: "job", key: "k1", payload: .object([JSONMember(key: "n", value: .number("1"))]))])
        #expect(again.results == [AppendResult(id: 1, duplicate: true)])
        #expect(s.lastID == 1)
        await #expect(throws: LogError.self) {
            try await s.append([AppendRequest(type: "job", key: "k1", payload: .number("2"))])
        }
        #expect(try s.id(forKey: "k1") == 1)
    }

    @Test func parentKeysMayNameEarlierEventsOfTheSameBatch() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        let receipt = try await s.append([
            AppendRequest(type: "a", key: "a"),
            AppendRequest(type: "b", parentKeys: ["a"], key: "b"),
            AppendRequest(type: "c", parents: [1], parentKeys: ["b", "a"]),
            AppendRequest(type: "a", key: "a"),
        ])
        #expect(receipt.results.map(\.id) == [1, 2, 3, 1])
        #expect(receipt.results.map(\.duplicate) == [false, false, false, true])
        #expect(try s.event(3)?.parents == [1, 2])
    }

    @Test func aBatchWithABadThirdEventStoresNothing() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        try await s.append([AppendRequest(type: "seed")])
        do {
            try await s.append([
                AppendRequest(type: "ok", key: "x1", stream: "s1"),
                AppendRequest(type: "newtype", parents: [1], key: "x2"),
                AppendRequest(type: "bad", parents: [99]),
            ])
            Issue.record("batch accepted")
        } catch let error as LogError {
            #expect(error.index == 2)
            #expect(error.field == "parents")
        }
        #expect(s.lastID == 1)
        #expect(try s.id(forKey: "x1") == nil)
        #expect(try s.events(type: "newtype", limit: 10).isEmpty)
        #expect(try s.heads() == [1])
        let next = try await s.append([AppendRequest(type: "after", key: "x1")]).results[0]
        #expect(next == AppendResult(id: 2, duplicate: false))
        let report = try s.verify()
        #expect(report.ok, "\(report.problems)")
    }

    /// A name first used in a rejected batch gives its dictionary id back; the id then goes to
    /// another name, and the first name, used again later, must get an id of its own.
    @Test func dictionaryIdsOfARejectedBatchAreReusedWithoutMixingNames() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        try await s.append([AppendRequest(type: "seed")])
        await #expect(throws: LogError.self) {
            try await s.append([
                AppendRequest(type: "x", stream: "sx"), AppendRequest(type: "x", stream: "sx"),
                AppendRequest(type: "bad", parents: [99]),
            ])
        }
        let y = try await s.append([AppendRequest(type: "y", stream: "sy")]).results[0].id
        let x = try await s.append([AppendRequest(type: "x", stream: "sx")]).results[0].id
        #expect(try s.events(type: "x", limit: 10).map(\.id) == [x])
        #expect(try s.events(type: "y", limit: 10).map(\.id) == [y])
        #expect(try s.events(stream: "sx", limit: 10).map(\.id) == [x])
        let report = try s.verify()
        #expect(report.ok, "\(report.problems)")
    }

    @Test func concurrentAppendsShareCommitGroupsAndStayDense() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let s = t.store
        let ids = try await withThrowingTaskGroup(of: [EventID].self) { group in
            for task in 0..<16 {
                group.addTask {
                    var mine: [EventID] = []
                    for i in 0..<50 {
                        let parents = mine.last.map { [$0] } ?? []
                        let r = try await s.append([AppendRequest(type: "t\(task)", parents: parents, key: "\(task)-\(i)")])
                        mine.append(r.results[0].id)
                    }
                    return mine
                }
            }
            var all: [EventID] = []
            for try await chunk in group { all += chunk }
            return all
        }
        #expect(Set(ids).count == 800)
        #expect(ids.sorted() == Array(1...800))
        #expect(try s.verify().ok)
    }

    @Test func boundedWriterQueueKeepsEveryAcceptedBatchAndNothingElse() async throws {
        var limits = Limits()
        limits.batchEventsMax = 10
        limits.commitGroupEventsMax = 10
        limits.writerQueueEventsMax = 10
        let t = try await TempStore.make(limits: limits)
        defer { t.remove() }
        let s = t.store
        let batch = (0..<10).map { AppendRequest(type: "e\($0)") }
        var overloaded = 0
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    do {
                        try await s.append(batch)
                        return false
                    } catch let e as LogError where e.code == .overloaded {
                        return true
                    }
                }
            }
            for try await refused in group where refused { overloaded += 1 }
        }
        #expect(s.lastID == UInt64(10 * (40 - overloaded)))
        #expect(try s.verify().ok)
    }

    @Test func limitsRelationshipsAreChecked() throws {
        #expect(throws: Never.self) { try Limits().validate() }
        var bad = Limits()
        bad.commitGroupEventsMax = bad.batchEventsMax - 1
        #expect(throws: LogError.self) { try bad.validate() }
    }
}
