@testable import BanyanServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

struct TreeMetaCacheTests {
    static func member(_ id: EventID, _ size: Int) -> (id: EventID, bytes: ArraySlice<UInt8>) {
        (id, ArraySlice(Array(repeating: UInt8(truncatingIfNeeded: id), count: size)))
    }

    /// What `copy` finds of `ids`: the indexes it lacks (nil past `bytesMax`) and the bytes of each found index.
    static func copied(_ cache: TreeMetaCache, _ ids: [EventID], rewrites: UInt64, bytesMax: Int = .max) -> (missing: [Int]?, found: [Int: [UInt8]]) {
        var w = JSONWriter(capacity: 0)
        var ranges: [Int: Range<Int>] = [:]
        let missing = cache.copy(ids, rewrites: rewrites, into: &w, bytesMax: bytesMax) { ranges[$0] = $1 }
        return (missing, ranges.mapValues { Array(w.bytes[$0]) })
    }

    @Test func keepsMembersUntilTheStoreRewritesAndWithinItsBytes() {
        let cache = TreeMetaCache(bytesMax: 256 * 100)  // members of at most 100 bytes
        cache.keep([Self.member(1, 100), Self.member(2, 100), Self.member(3, 101)], readAt: 4, now: 4)
        var got = Self.copied(cache, [1, 2, 3, 4], rewrites: 4)
        #expect(got.missing == [2, 3], "3 is longer than a 256th of the bytes")
        #expect(got.found == [0: Array(repeating: 1, count: 100), 1: Array(repeating: 2, count: 100)])
        #expect(Self.copied(cache, [1, 2], rewrites: 4, bytesMax: 150).missing == nil, "past the caller's bytes")

        cache.keep([Self.member(5, 10)], readAt: 4, now: 6)
        cache.keep([Self.member(6, 10)], readAt: 5, now: 5)
        #expect(Self.copied(cache, [5, 6], rewrites: 4).missing == [0, 1], "read across a rewrite, or during one: not kept")
        #expect(Self.copied(cache, [1], rewrites: 5).missing == [0], "nothing is served while a rewrite is under way")
        #expect(Self.copied(cache, [1], rewrites: 4).missing == [], "an odd count, in a keep or a lookup, does not empty the cache")
        #expect(Self.copied(cache, [1], rewrites: 6).missing == [0], "a later count empties the cache")
        #expect(cache.figures.members == 0 && cache.figures.bytes == 0)
        cache.keep([Self.member(1, 10)], readAt: 4, now: 4)
        #expect(Self.copied(cache, [1], rewrites: 6).missing == [0], "members read before the rewrite stay out")

        for id in EventID(1)...1_000 { cache.keep([Self.member(id, 100)], readAt: 6, now: 6) }
        let figures = cache.figures
        #expect(figures.bytes <= 256 * 100 && figures.bytes == figures.members * (100 + TreeMetaCache.overheadBytes))
        let perGeneration = 256 * 100 / 2 / (100 + TreeMetaCache.overheadBytes)
        #expect(figures.members > perGeneration, "two generations of half the bytes each, the older full: \(figures.members)")
        #expect(Self.copied(cache, [1], rewrites: 6).missing == [0], "the oldest left")
        let oldest = EventID(1_001 - figures.members)
        #expect(Self.copied(cache, [oldest, 1_000], rewrites: 6).missing == [], "the newest \(figures.members) stayed")
        // The oldest was found in the older generation and moved: it outlives the next turn.
        for id in EventID(2_000)..<2_000 + EventID(figures.members / 2 + 1) { cache.keep([Self.member(id, 100)], readAt: 6, now: 6) }
        #expect(Self.copied(cache, [oldest], rewrites: 6).missing == [])
        #expect(Self.copied(cache, [oldest + 1], rewrites: 6).missing == [0])

        let fresh = TreeMetaCache(bytesMax: 256 * 100)
        fresh.keep((EventID(1)...200).map { Self.member($0, 100) }, readAt: 0, now: 0)
        #expect(fresh.figures.members == perGeneration, "one tree offers at most half the bytes")
        #expect(Self.copied(fresh, [1, EventID(perGeneration)], rewrites: 0).missing == [])

        let off = TreeMetaCache(bytesMax: 0)
        off.keep([Self.member(1, 1)], readAt: 0, now: 0)
        #expect(Self.copied(off, [1], rewrites: 0).missing == [0] && off.figures.members == 0)
    }

    /// A meta tree served from the cache is the one read from the store, and a compaction shows
    /// through it at once.
    @Test func metaTreesFromTheCacheAreTheStoresAndFollowACompaction() async throws {
        try await CelestialTreeRoutesTests.withBanyanServer { server, client in
            _ = try await CelestialTreeRoutesTests.post(client, "/emit", #"{"type":"a","parents":[1],"message":"m\n\"2","payload":{"k":[1]}}"#)
            _ = try await CelestialTreeRoutesTests.post(client, "/emit", #"{"type":"b","parents":[2,1],"payload":"p"}"#)
            _ = try await CelestialTreeRoutesTests.post(client, "/emit", #"{"type":"c","parents":[3,2]}"#)
            _ = try await client.execute(uri: "/descendants/3?view=meta", method: .get)
            #expect(server.treeMeta.figures.members == 2 && server.treeMeta.figures.hits == 0)
            // 3 and 4 from the cache, 1 and 2 read: each node still gets its own members.
            let cold = String(buffer: try await client.execute(uri: "/provenance/4?view=meta", method: .get).body)
            #expect(server.treeMeta.figures.members == 4 && server.treeMeta.figures.hits == 2)
            var types: [Int: String] = [:]
            func collect(_ node: [String: Any]) {
                if let id = node["id"] as? Int { types[id] = node["type"] as? String }
                for parent in node["parents"] as? [[String: Any]] ?? [] { collect(parent) }
            }
            collect(try #require(try JSONSerialization.jsonObject(with: Data(cold.utf8)) as? [String: Any]))
            #expect(types == [1: "genesis", 2: "a", 3: "b", 4: "c"])
            let warm = String(buffer: try await client.execute(uri: "/provenance/4?view=meta", method: .get).body)
            #expect(server.treeMeta.figures.hits == 6)
            #expect(warm == cold && cold.contains(#""type":"a","message":"m\n\"2","payload":{"k":[1]}"#))
            let descendants = String(buffer: try await client.execute(uri: "/descendants/2?view=meta", method: .get).body)
            #expect(descendants.hasPrefix(#"{"id":2,"time_unix_nano":"#) && descendants.contains(#""type":"a","message":"m\n\"2","payload":{"k":[1]},"is_ref":false,"children":[{"id":3,"#))

            _ = try server.store.compact(CompactionSpec(before: 4, through: server.store.lastID), control: 0)
            let compacted = String(buffer: try await client.execute(uri: "/provenance/4?view=meta", method: .get).body)
            #expect(!compacted.contains("message") && !compacted.contains("payload"), "\(compacted)")
            // The same tree without the messages and payloads (the genesis event's message too).
            let content = #","(message|payload)":("([^"\\]|\\.)*"|\{"k":\[1\]\})"#
            #expect(compacted == cold.replacingOccurrences(of: content, with: "", options: .regularExpression))
        }
    }
}
