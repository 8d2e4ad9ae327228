import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The whole DAG's adjacency in memory, so traversals cost array reads instead of RocksDB point
/// gets (an 80k-event ancestor walk: milliseconds instead of a third of a second). It is a cache
/// of the `parents` family: rebuilt by scanning it at open, extended by the writer after each
/// commit group is written and before the group is published, so a reader that sees `lastID`
/// sees the edges of every event up to it.
///
/// Layout (ids and edge indexes are 32-bit; `capacity` bounds both):
/// - `parentEnd[id]`: end offset of `id`'s parents in `parentList` (`parentEnd[0] = 0`), so
///   `parentList[parentEnd[id-1] ..< parentEnd[id]]` are its parents, in stored order;
/// - `childHead[id]`: 1 + the edge index of `id`'s newest child edge, 0 when it has none;
/// - per edge `e` (= its position in `parentList`): `edgeChild[e]`, the child holding it, and
///   `edgeNext[e]`, 1 + the parent's next older child edge. Child lists are thus newest-first
///   linked lists that only ever grow at the head.
///
/// Memory: 8 bytes per event plus 12 per edge (about 250 MB for 10M events with 13M edges),
/// allocated in fixed chunks that never move, so readers need no lock: the writer fills slots,
/// then publishes with a release store (`published`, and each `childHead` store); readers load
/// with acquire and only touch what was published before.
///
/// Thread-safety: one writer (the store's writer thread, or `load` before the store is shared),
/// any number of readers.
final class GraphIndex: @unchecked Sendable {
    /// Events and edges the index can hold; a larger store falls back to RocksDB reads.
    static let capacity = Int(UInt32.max) - 1

    private let parentEnd = Chunks<UInt32>()
    private let parentList = Chunks<UInt32>()
    private let childHead = Chunks<Atomic<UInt32>>()
    private let edgeChild = Chunks<UInt32>()
    private let edgeNext = Chunks<UInt32>()
    /// Ids `1...published` are readable.
    private let published = Atomic<Int>(0)
    /// Writer-side edge count.
    private var edges = 0
    /// Set when an append would pass `capacity`; the index then stops growing and reports itself
    /// unusable, and the store reads adjacency from RocksDB.
    private let overflowed = Atomic(false)

    init() {
        parentEnd.ensure(0)
        parentEnd[0] = 0
        childHead.ensure(0)
    }

    /// The last id whose adjacency is readable, or nil when the index gave up (over capacity).
    var lastID: EventID? {
        overflowed.load(ordering: .acquiring) ? nil : EventID(published.load(ordering: .acquiring))
    }

    var edgeCount: Int { edges }

    /// Appends the next events' parent lists (ids `lastID + 1` onwards, in order). Writer only.
    func append<S: Sequence>(_ parentLists: S) where S.Element == [EventID] {
        guard !overflowed.load(ordering: .relaxed) else { return }
        var id = published.load(ordering: .relaxed)
        for parents in parentLists {
            id += 1
            guard id <= Self.capacity, edges + parents.count <= Self.capacity else {
                overflowed.store(true, ordering: .releasing)
                return
            }
            parentEnd.ensure(id)
            childHead.ensure(id)
            for parent in parents {
                let e = edges
                parentList.ensure(e)
                edgeChild.ensure(e)
                edgeNext.ensure(e)
                parentList[e] = UInt32(parent)
                edgeChild[e] = UInt32(id)
                edgeNext[e] = childHead.slot(Int(parent)).pointee.load(ordering: .relaxed)
                edges += 1
                childHead.slot(Int(parent)).pointee.store(UInt32(edges), ordering: .releasing)
            }
            parentEnd[id] = UInt32(edges)
        }
        published.store(id, ordering: .releasing)
    }

    /// Parents of `id` in stored order; `id` must be `<= lastID`.
    func parents(of id: EventID) -> [EventID] {
        let i = Int(id)
        let start = Int(parentEnd[i - 1])
        let end = Int(parentEnd[i])
        var result: [EventID] = []
        result.reserveCapacity(end - start)
        for e in start ..< end { result.append(EventID(parentList[e])) }
        return result
    }

    func hasParents(_ id: EventID) -> Bool {
        parentEnd[Int(id) - 1] != parentEnd[Int(id)]
    }

    /// Children of `id` up to `upTo`, ascending; at most `limit` (`limit + 1` lets callers detect
    /// overflow). `id` must be `<= lastID`.
    func children(of id: EventID, upTo: EventID, limit: Int = Int.max) -> [EventID] {
        var result: [EventID] = []
        var link = childHead.slot(Int(id)).pointee.load(ordering: .acquiring)
        // The list runs newest first; callers want ascending ids, the lowest `limit` of them.
        while link != 0 {
            let e = Int(link - 1)
            let child = EventID(edgeChild[e])
            if child <= upTo { result.append(child) }
            link = edgeNext[e]
        }
        result.reverse()
        if result.count > limit { result.removeLast(result.count - limit) }
        return result
    }

    /// Loads the index from the `parents` family for ids `1...lastID`. Returns nil when the store
    /// is larger than `capacity`.
    static func load(_ storage: LogStorage, lastID: EventID) throws(StorageError) -> GraphIndex? {
        guard lastID <= EventID(capacity) else { return nil }
        let graph = GraphIndex()
        let it = try storage.db.iterator(storage.cf(.parents), fillCache: false)
        it.seekToFirst()
        var next: EventID = 1
        var pending: [[EventID]] = []
        pending.reserveCapacity(4_096)
        while it.isValid {
            let id = it.withKey { k in LogStorage.be64(k, at: 0) }
            guard id <= lastID else { break }
            guard id >= next else { throw StorageError(.corruption, "parents: key \(id) out of order") }
            while next < id {
                pending.append([])
                next += 1
            }
            pending.append(try RecordCodec.decodeParents(id: id, it.value))
            next += 1
            if pending.count >= 4_096 {
                graph.append(pending)
                pending.removeAll(keepingCapacity: true)
            }
            it.next()
        }
        try it.checkStatus()
        while next <= lastID {
            pending.append([])
            next += 1
        }
        graph.append(pending)
        return graph.lastID == nil ? nil : graph
    }
}

/// A growable array in fixed-size chunks that never move once allocated, so a reader can hold
/// an index while the writer appends. The chunk directory is allocated once, for `capacity`.
final class Chunks<Element>: @unchecked Sendable where Element: ~Copyable {
    static var shift: Int { 16 }
    static var chunkSize: Int { 1 << shift }
    private let directory: UnsafeMutablePointer<UnsafeMutablePointer<Element>?>
    private let directorySize: Int
    private var allocated = 0

    init() {
        directorySize = GraphIndex.capacity >> Self.shift + 1
        directory = .allocate(capacity: directorySize)
        directory.initialize(repeating: nil, count: directorySize)
    }

    deinit {
        for i in 0 ..< allocated { free(directory[i]) }
        directory.deallocate()
    }

    /// Makes slot `index` addressable (zero-filled). Writer only.
    func ensure(_ index: Int) {
        let chunk = index >> Self.shift
        while allocated <= chunk {
            // calloc: zeroed pages are mapped lazily, and zero is every element's initial value.
            guard let raw = calloc(Self.chunkSize, MemoryLayout<Element>.stride) else {
                fatalError("out of memory growing the graph index")
            }
            directory[allocated] = raw.bindMemory(to: Element.self, capacity: Self.chunkSize)
            allocated += 1
        }
    }

    func slot(_ index: Int) -> UnsafeMutablePointer<Element> {
        directory[index >> Self.shift].unsafelyUnwrapped + (index & (Self.chunkSize - 1))
    }
}

extension Chunks where Element == UInt32 {
    subscript(index: Int) -> UInt32 {
        get { slot(index).pointee }
        set { slot(index).pointee = newValue }
    }
}
