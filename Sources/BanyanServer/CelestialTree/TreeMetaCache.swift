import EventLog
import Synchronization

/// The `?view=meta` members of events that lineage trees wrote lately, so a tree that meets an
/// event again copies its bytes instead of a point read, a record decode and an encoding
/// (docs/HTTP_API.md, "The meta view's cache"). Reads of a tree's events, not its walk, were
/// most of a meta tree's time: a tree of a recent event reaches its ancestors all over the log.
///
/// Records up to the last id change only through a compaction batch, a prune or a follower's
/// truncation, and each of those moves the store's rewrite count (odd while one is under way).
/// Members are kept with the count they were read at, only when it was even and had not moved by
/// the time they were read. A lookup or a keep at a later even count empties the cache first;
/// at an odd count or an older one it finds and keeps nothing.
///
/// Memory is bounded by `Limits.treeMetaCacheBytesMax` in two generations: members go into the
/// newer one; when it holds half the bytes it becomes the older one and the older one is dropped;
/// a member found in the older one moves to the newer. A member longer than a 256th of the bytes
/// is never kept, nor more than half the bytes from one tree; 0 bytes turns the cache off.
package final class TreeMetaCache: Sendable {
    private struct State {
        var rewrites: UInt64 = 0
        var newer: [EventID: [UInt8]] = [:]
        var older: [EventID: [UInt8]] = [:]
        var newerBytes = 0
        var olderBytes = 0
        var hits = 0
        var misses = 0

        /// Makes `rewrites` the count the members belong to, emptying the cache when it moved.
        /// False for a count older than the cache's own (a reader that started before a rewrite).
        mutating func at(_ rewrites: UInt64) -> Bool {
            if rewrites == self.rewrites { return true }
            guard rewrites > self.rewrites else { return false }
            self = State(rewrites: rewrites, hits: hits, misses: misses)
            return true
        }
    }

    let bytesMax: Int
    private let state = Mutex(State())
    /// Per member, beside its bytes: its dictionary slot at the table's lowest load (about 43
    /// bytes), the array's header (32) and malloc's rounding.
    static let overheadBytes = 96
    /// Ids looked up under the lock at a time: a tree of millions of events takes turns with the
    /// others (and `/metrics`) instead of holding it throughout.
    static let idsPerLock = 4_096

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    private var memberBytesMax: Int { bytesMax / 256 }

    /// Whether every one of `ids` is kept, without counting a lookup or refreshing a member: a
    /// probe before a try that would be given up otherwise (`FastTree` on the event loop).
    func holds(_ ids: [EventID], rewrites: UInt64) -> Bool {
        guard bytesMax > 0, rewrites % 2 == 0 else { return false }
        for chunk in stride(from: 0, to: ids.count, by: Self.idsPerLock) {
            let all = state.withLock { s -> Bool in
                guard s.rewrites == rewrites else { return false }
                return ids[chunk..<min(chunk + Self.idsPerLock, ids.count)].allSatisfy { s.newer[$0] != nil || s.older[$0] != nil }
            }
            guard all else { return false }
        }
        return true
    }

    /// Appends to `w` the kept members of each of `ids` and calls `found` with the id's index in
    /// `ids` and where its bytes are in `w`; returns the indexes of the ids it lacks. Stops, and
    /// answers nil, once `w` would hold more than `bytesMax` bytes.
    func copy(_ ids: [EventID], rewrites: UInt64, into w: inout JSONWriter, bytesMax: Int, found: (Int, Range<Int>) -> Void) -> [Int]? {
        guard self.bytesMax > 0 else { return Array(ids.indices) }
        var missing: [Int] = []
        for chunk in stride(from: 0, to: ids.count, by: Self.idsPerLock) {
            let end = min(chunk + Self.idsPerLock, ids.count)
            let fits = state.withLock { s -> Bool in
                guard rewrites % 2 == 0, s.at(rewrites) else {
                    s.misses += end - chunk
                    missing += chunk..<end
                    return true
                }
                for at in chunk..<end {
                    let id = ids[at]
                    var member = s.newer[id]
                    if member == nil, let old = s.older.removeValue(forKey: id) {
                        s.olderBytes -= old.count + Self.overheadBytes
                        Self.put(id, old, into: &s, halfMax: self.bytesMax / 2)
                        member = old
                    }
                    guard let member else {
                        s.misses += 1
                        missing.append(at)
                        continue
                    }
                    guard w.bytes.count + member.count <= bytesMax else { return false }
                    s.hits += 1
                    let start = w.bytes.count
                    w.bytes.append(contentsOf: member)
                    found(at, start..<w.bytes.count)
                }
                return true
            }
            guard fits else { return nil }
        }
        return missing
    }

    /// Keeps members read while the store's rewrite count was `readAt`; `now` is the count read
    /// after them. Nothing is kept if a rewrite began or ended in between.
    func keep(_ members: [(id: EventID, bytes: ArraySlice<UInt8>)], readAt: UInt64, now: UInt64) {
        guard bytesMax > 0, readAt == now, readAt % 2 == 0, !members.isEmpty else { return }
        let (memberBytesMax, halfMax) = (self.memberBytesMax, bytesMax / 2)
        // What one generation holds at most: a larger tree would copy members only to drop them.
        var total = 0
        var kept: [(EventID, [UInt8])] = []
        for m in members where m.bytes.count <= memberBytesMax {
            total += m.bytes.count + Self.overheadBytes
            guard total <= halfMax else { break }
            kept.append((m.id, Array(m.bytes)))
        }
        state.withLock { s in
            guard s.at(readAt) else { return }
            for (id, bytes) in kept { Self.put(id, bytes, into: &s, halfMax: bytesMax / 2) }
        }
    }

    private static func put(_ id: EventID, _ bytes: [UInt8], into s: inout State, halfMax: Int) {
        let size = bytes.count + overheadBytes
        if let old = s.newer.removeValue(forKey: id) { s.newerBytes -= old.count + overheadBytes }
        if let old = s.older.removeValue(forKey: id) { s.olderBytes -= old.count + overheadBytes }
        if s.newerBytes + size > halfMax {
            s.older = s.newer
            s.olderBytes = s.newerBytes
            s.newer = [:]
            s.newerBytes = 0
        }
        s.newer[id] = bytes
        s.newerBytes += size
    }

    /// Members kept, their bytes with the overhead, and members found or not (for `/metrics`).
    var figures: (members: Int, bytes: Int, hits: Int, misses: Int) {
        state.withLock { s in (s.newer.count + s.older.count, s.newerBytes + s.olderBytes, s.hits, s.misses) }
    }
}
