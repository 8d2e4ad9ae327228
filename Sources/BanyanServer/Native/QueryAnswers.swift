import EventLog
import LineageQuery
import Synchronization

/// Answers of `POST /v1/query` kept between pages, so following `next` costs the query once
/// instead of once per page (docs/HTTP_API.md, `POST /v1/query`).
///
/// An answer is the same whichever page asks for it: it is keyed by the query text, the snapshot
/// the first page fixed and the budget, and events up to a snapshot never change their ids,
/// links, types or streams. A page that finds no answer here (evicted, another server, a
/// restart) runs the query again over the same snapshot, as every page did before this cache.
///
/// Memory is bounded by `Limits.queryAnswerCacheBytesMax` (ids at 8 bytes each plus the text
/// and a fixed overhead per answer); the least recently used answers leave first, and an answer
/// larger than a quarter of the bound is never kept. 0 turns the cache off.
final class QueryAnswers: Sendable {
    struct Key: Hashable, Sendable {
        var text: String
        var snapshot: EventID
        var budget: QueryBudget
    }

    private struct Entry {
        var result: QueryResult
        var bytes: Int
        var used: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
        var hits = 0
        var misses = 0
    }

    let bytesMax: Int
    private let state = Mutex(State())
    /// Per answer, beside its ids: the dictionary slot, the entry and the result's fields.
    static let overheadBytes = 256

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    func answer(_ key: Key) -> QueryResult? {
        state.withLock { s in
            guard var entry = s.entries[key] else {
                s.misses += 1
                return nil
            }
            s.clock += 1
            entry.used = s.clock
            s.entries[key] = entry
            s.hits += 1
            return entry.result
        }
    }

    func keep(_ result: QueryResult, for key: Key) {
        let bytes = Self.bytes(of: result) + key.text.utf8.count + Self.overheadBytes
        guard bytes <= bytesMax / 4 else { return }
        state.withLock { s in
            if let old = s.entries.removeValue(forKey: key) { s.bytes -= old.bytes }
            // Eviction scans the entries: they are few (each is at least overheadBytes, and
            // every answer worth keeping is far larger), and a scan is cheaper than the query.
            while s.bytes + bytes > bytesMax, let oldest = s.entries.min(by: { $0.value.used < $1.value.used }) {
                s.bytes -= oldest.value.bytes
                s.entries.removeValue(forKey: oldest.key)
            }
            s.clock += 1
            s.entries[key] = Entry(result: result, bytes: bytes, used: s.clock)
            s.bytes += bytes
        }
    }

    /// Answers kept, their bytes, and lookups that found or missed one (for `/metrics`).
    var figures: (answers: Int, bytes: Int, hits: Int, misses: Int) {
        state.withLock { s in (s.entries.count, s.bytes, s.hits, s.misses) }
    }

    static func bytes(of result: QueryResult) -> Int {
        switch result.answer {
        case .count: return 0
        case .ids(let ids): return ids.count * MemoryLayout<EventID>.stride
        case .paths(let paths): return paths.reduce(0) { $0 + 32 + $1.count * MemoryLayout<EventID>.stride }
        }
    }
}
