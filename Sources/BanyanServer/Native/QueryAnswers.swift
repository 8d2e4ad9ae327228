import EventLog
import LineageQuery
import Synchronization

/// Answers of `POST /v1/query` kept between pages, so following `next` costs the query once
/// instead of once per page (docs/HTTP_API.md, `POST /v1/query`).
///
/// Only later pages look here; a first page always runs its query. An answer is keyed by the
/// query text, the snapshot the first page fixed and the budget, and holds the store's rewrite
/// count: ids, links, types and streams up to a snapshot never change, but a compaction batch, a
/// prune or a follower's truncation can change what a query over them finds, and after one of
/// those the answer is dropped and the page computes it again over the same snapshot, as a page
/// whose answer was evicted (or that reached another server, or came after a restart) does.
///
/// Memory is bounded by `Limits.queryAnswerCacheBytesMax` (ids at 8 bytes each plus the text
/// and a fixed overhead per answer) and by `answersMax` answers; the least recently used leave
/// first, an answer larger than a quarter of the bytes is never kept, an answer leaves once its
/// last page is served, and 0 bytes turns the cache off.
package final class QueryAnswers: Sendable {
    struct Key: Hashable, Sendable {
        var text: String
        var snapshot: EventID
        var budget: QueryBudget
    }

    private struct Entry {
        var result: QueryResult
        var rewrites: UInt64
        var bytes: Int
        var used: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
        var hits = 0
        var misses = 0

        /// Drops the answer kept for `key`, if any, and its bytes.
        mutating func remove(_ key: Key) {
            if let old = entries.removeValue(forKey: key) { bytes -= old.bytes }
        }
    }

    let bytesMax: Int
    private let state = Mutex(State())
    /// Per answer, beside its ids: the dictionary slot, the entry and the result's fields.
    static let overheadBytes = 256
    /// Answers kept at once: eviction looks through them all, under the lock every page takes.
    static let answersMax = 1_024

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    /// The answer kept for `key` while the store's rewrite count is still `rewrites`.
    func answer(_ key: Key, rewrites: UInt64) -> QueryResult? {
        state.withLock { s in
            guard var entry = s.entries[key], entry.rewrites == rewrites else {
                s.remove(key)
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

    func keep(_ result: QueryResult, for key: Key, rewrites: UInt64) {
        let bytes = Self.bytes(of: result) + key.text.utf8.count + Self.overheadBytes
        guard bytes <= bytesMax / 4 else { return }
        state.withLock { s in
            s.remove(key)
            // A scan of at most answersMax entries costs microseconds; the query it saves, milliseconds.
            while s.bytes + bytes > bytesMax || s.entries.count >= Self.answersMax,
                let oldest = s.entries.min(by: { $0.value.used < $1.value.used })
            {
                s.remove(oldest.key)
            }
            s.clock += 1
            s.entries[key] = Entry(result: result, rewrites: rewrites, bytes: bytes, used: s.clock)
            s.bytes += bytes
        }
    }

    /// An answer whose last page was served.
    func forget(_ key: Key) {
        state.withLock { $0.remove(key) }
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
