import EventLog
import Foundation
import Testing
@testable import LineageQuery

/// Every form of the language on seeded random DAGs, against a naive reference written here
/// from the semantics in docs/QUERY_LANGUAGE.md.
struct ExecutorTests {
    struct Reference {
        var parents: [[EventID]] = [[]]
        var types: [String] = [""]
        var numbers: [Int] = [0]

        var last: EventID { EventID(parents.count - 1) }
        func children(_ id: EventID) -> [EventID] { (1...last).filter { parents[Int($0)].contains(id) } }

        /// Shortest hop distance from `start` to every reachable event.
        func distances(_ start: EventID, up: Bool) -> [EventID: Int] {
            var distance: [EventID: Int] = [start: 0]
            var queue = [start]
            var i = 0
            while i < queue.count {
                let node = queue[i]
                i += 1
                for next in up ? parents[Int(node)] : children(node) where distance[next] == nil {
                    distance[next] = distance[node]! + 1
                    queue.append(next)
                }
            }
            return distance
        }

        func reach(_ start: EventID, up: Bool, maxDepth: Int? = nil) -> [EventID] {
            distances(start, up: up).filter { $0.key != start && $0.value <= (maxDepth ?? Int.max) }.map(\.key).sorted()
        }

        func pathCount(_ a: EventID, _ b: EventID) -> Int {
            var ways: [EventID: Int] = [a: 1]
            for id in a...b where id != a {
                ways[id] = parents[Int(id)].reduce(0) { $0 + (ways[$1] ?? 0) }
            }
            return ways[b] ?? 0
        }

        /// The `k` smallest path lengths (in hops) from `a` to `b`, from per-length path counts.
        func shortestPathLengths(_ a: EventID, _ b: EventID, k: Int) -> [Int] {
            guard a <= b else { return [] }
            var ways: [EventID: [Int: Int]] = [a: [0: 1]]
            for id in a...b where id != a {
                var byLength: [Int: Int] = [:]
                for p in parents[Int(id)] { for (length, n) in ways[p] ?? [:] { byLength[length + 1, default: 0] += n } }
                ways[id] = byLength
            }
            var lengths: [Int] = []
            for (length, n) in (ways[b] ?? [:]).sorted(by: { $0.key < $1.key }) where lengths.count < k {
                lengths += Array(repeating: length, count: min(n, k - lengths.count))
            }
            return lengths
        }
    }

    static func build(seed: UInt64, count: Int) async throws -> (EventStore, String, Reference) {
        var rng = SplitMix(state: seed)
        let path = NSTemporaryDirectory() + "banyan-query-\(seed)-\(UUID().uuidString.prefix(6))"
        var options = StoreOptions()
        options.createGenesis = false
        options.durability = .never
        let store = try await EventStore.open(at: path, options: options)
        var reference = Reference()
        var batch: [AppendRequest] = []
        for id in 1...count {
            var parents: [EventID] = []
            if id > 1 && rng.next() % 8 != 0 {
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let back = rng.next() % 2 == 0 ? 1 + Int(rng.next() % UInt64(min(4, id - 1))) : 1 + Int(rng.next() % UInt64(id - 1))
                    let p = EventID(id - back)
                    if !parents.contains(p) { parents.append(p) }
                }
            }
            let type = "t\(rng.next() % 3)"
            let n = Int(rng.next() % 10)
            reference.parents.append(parents)
            reference.types.append(type)
            reference.numbers.append(n)
            batch.append(AppendRequest(type: type, parents: parents, key: "k\(id)", payload: .members(["n": .int(n)])))
        }
        try await store.append(batch)
        return (store, path, reference)
    }

    static func ids(_ r: QueryResult) -> [EventID] {
        guard case .ids(let ids) = r.answer else { return [] }
        return ids
    }

    @Test(arguments: [1, 2])
    func everyFormAgreesWithTheReference(round: Int) async throws {
        let seed = (ProcessInfo.processInfo.environment["BANYAN_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970 * 1000)) &+ UInt64(round)
        print("ExecutorTests round \(round): seed \(seed)")
        let (store, path, ref) = try await Self.build(seed: seed, count: 120)
        defer {
            store.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        func run(_ q: String) throws -> QueryResult { try Executor.run(q, store: store) }
        for x in stride(from: EventID(1), through: 120, by: 7) {
            let context = "seed \(seed), x \(x)"
            #expect(Self.ids(try run("ancestors(\(x))")) == ref.reach(x, up: true), "\(context)")
            #expect(Self.ids(try run("descendants(key \"k\(x)\", depth <= 2)")) == ref.reach(x, up: false, maxDepth: 2), "\(context)")
            let filtered: [EventID] = ref.reach(x, up: true).filter { id in ref.types[Int(id)] == "t1" || ref.numbers[Int(id)] >= 7 }
            #expect(Self.ids(try run("ancestors(\(x)) where type = \"t1\" or payload.n >= 7")) == filtered, "\(context)")
            let roots = ref.reach(x, up: true)
            let expectedRoots: [EventID] = roots.filter { r in !ref.parents[Int(r)].contains(where: roots.contains) }
            #expect(Self.ids(try run("roots(ancestors(\(x)))")) == expectedRoots, "\(context)")
            guard case .count(let n) = try run("count(descendants(\(x)))").answer else { Issue.record("count"); continue }
            #expect(n == ref.reach(x, up: false).count, "\(context)")
            // follow matching: only through events of type t0.
            var through: Set<EventID> = []
            var stack = [x]
            while let node = stack.popLast() {
                for child in ref.children(node) where ref.types[Int(child)] == "t0" && through.insert(child).inserted { stack.append(child) }
            }
            #expect(Self.ids(try run("descendants(\(x)) where type = \"t0\" follow matching")) == through.sorted(), "\(context)")
        }
        for (a, b) in [(EventID(1), EventID(120)), (5, 90), (30, 60), (2, 119)] {
            let context = "seed \(seed), \(a)->\(b)"
            let down = Set(ref.reach(a, up: false) + [a])
            let expected = (ref.reach(b, up: true) + [b]).filter { down.contains($0) && ($0 != a || down.contains(b)) }
            let betweenIDs = Self.ids(try run("between(\(a), \(b))"))
            let expectedBetween: [EventID] = down.contains(b) ? (expected + [a]).sorted().uniqued() : []
            #expect(betweenIDs == expectedBetween, "\(context)")
            let total = ref.pathCount(a, b)
            guard case .paths(let paths) = try run("paths(\(a), \(b)) limit 5").answer else { Issue.record("paths"); continue }
            #expect(paths.count == min(5, total), "\(context): \(total) paths exist")
            #expect(Set(paths).count == paths.count, "\(context): paths distinct")
            for p in paths {
                #expect(p.first == a && p.last == b, "\(context)")
                for (u, v) in zip(p, p.dropFirst()) { #expect(ref.parents[Int(v)].contains(u), "\(context): \(u)->\(v) is a link") }
            }
            #expect(paths.map { $0.count - 1 } == ref.shortestPathLengths(a, b, k: 5), "\(context): the 5 shortest, shortest first")
            if total > 0, let shortest = ref.distances(a, up: false)[b] {
                guard case .paths(let one) = try run("path(\(a), \(b))").answer else { Issue.record("path"); continue }
                #expect(one.first?.count == shortest + 1, "\(context): shortest path length")
            }
        }
        let scan = Self.ids(try run("events where type = \"t2\" and payload.n < 3 order by id desc limit 4"))
        let all: [EventID] = (1...120).map(EventID.init)
        let matching: [EventID] = all.filter { id in ref.types[Int(id)] == "t2" && ref.numbers[Int(id)] < 3 }
        let newest: [EventID] = Array(matching.reversed().prefix(4))
        #expect(scan == newest, "seed \(seed)")
    }

    @Test func budgetsStopTheWorkAndSaySo() async throws {
        let (store, path, _) = try await Self.build(seed: 7, count: 200)
        defer {
            store.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        var budget = QueryBudget()
        budget.nodesMax = 10
        let result = try Executor.run("descendants(1)", store: store, budget: budget)
        #expect(result.truncated)
        #expect(result.reason?.contains("node budget") == true)
        #expect(Self.ids(result).count <= 10)
        #expect(throws: QueryError.self) { try Executor.run("ancestors(999)", store: store) }
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
