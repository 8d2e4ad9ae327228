import Testing
@testable import EventLog

/// Traversals on seeded random DAGs against a naive in-memory reference.
struct TraversalTests {
    struct Reference {
        var parents: [[EventID]] = [[]]  // index = id; 0 unused

        func ancestors(_ id: EventID) -> [EventID] {
            var seen = Set<EventID>()
            var stack = parents[Int(id)]
            while let p = stack.popLast() {
                if seen.insert(p).inserted { stack += parents[Int(p)] }
            }
            return seen.sorted()
        }

        func descendants(_ id: EventID, _ ancestorSets: [Set<EventID>]) -> [EventID] {
            (1..<parents.count).map(EventID.init).filter { ancestorSets[Int($0)].contains(id) }
        }

        func children(_ id: EventID) -> [EventID] {
            (1..<parents.count).map(EventID.init).filter { parents[Int($0)].contains(id) }
        }
    }

    @Test(arguments: [0, 1, 2])
    func traversalsAgreeWithTheNaiveReference(round: Int) async throws {
        let seed = SeededRandom.seed("TraversalTests round \(round)") &+ UInt64(round)
        var rng = SeededRandom(seed: seed)
        let t = try await TempStore.make("traversal\(round)")
        defer { t.remove() }
        var reference = Reference()
        var batch: [AppendRequest] = []
        let count = 300
        for id in 1...count {
            var parents: [EventID] = []
            if id > 1 && Int.random(in: 0..<10, using: &rng) > 0 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    // Mostly recent parents, sometimes far back, to make long chains and merges.
                    let back = Bool.random(using: &rng) ? Int.random(in: 1...min(5, id - 1), using: &rng) : Int.random(in: 1...(id - 1), using: &rng)
                    let p = EventID(id - back)
                    if !parents.contains(p) { parents.append(p) }
                }
            }
            reference.parents.append(parents)
            batch.append(AppendRequest(type: "t\(id % 4)", parents: parents))
        }
        try await t.store.append(batch)
        let s = t.store
        let ancestorSets = [Set<EventID>()] + (1...count).map { Set(reference.ancestors(EventID($0))) }
        for id in EventID(1)...EventID(count) {
            #expect(try s.ancestors(of: id) == reference.ancestors(id), "ancestors of \(id), seed \(seed)")
            #expect(try s.descendants(of: id) == reference.descendants(id, ancestorSets), "descendants of \(id), seed \(seed)")
            #expect(try s.children(of: id) == reference.children(id), "children of \(id), seed \(seed)")
            let roots = ([id] + reference.ancestors(id)).filter { reference.parents[Int($0)].isEmpty }.sorted()
            #expect(try s.reachableRoots(of: id) == roots, "roots of \(id), seed \(seed)")
        }
        let all = (1...count).map(EventID.init)
        #expect(try s.roots() == all.filter { reference.parents[Int($0)].isEmpty })
        #expect(try s.heads() == all.filter { reference.children($0).isEmpty })
        #expect(try s.ancestors(of: EventID(count + 1)) == nil)
        let report = try s.verify()
        #expect(report.ok, "\(report.problems)")
    }

    @Test func theNodeBudgetAborts() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        try await t.store.append((1...50).map { AppendRequest(type: "c", parents: $0 == 1 ? [] : [EventID($0 - 1)]) })
        #expect(try t.store.ancestors(of: 50, nodesMax: 49)?.count == 49)
        #expect(throws: LogError.self) { try t.store.ancestors(of: 50, nodesMax: 48) }
        #expect(throws: LogError.self) { try t.store.descendants(of: 1, nodesMax: 10) }
    }

    @Test func aChainTwentySixThousandDeepIsTraversedWithoutRecursion() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let depth = 26_500
        var next: EventID = 1
        while next <= EventID(depth) {
            let start = next
            let batch = (start..<min(start + 5_000, EventID(depth) + 1)).map { AppendRequest(type: "c", parents: $0 == 1 ? [] : [$0 - 1]) }
            try await t.store.append(batch)
            next += EventID(batch.count)
        }
        #expect(try t.store.ancestors(of: EventID(depth))?.count == depth - 1)
        #expect(try t.store.reachableRoots(of: EventID(depth)) == [1])
        #expect(try t.store.descendants(of: 1)?.count == depth - 1)
    }
}
