import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything about the log that is not the records themselves, in memory: each event's parents
/// and children, type and stream dictionary ids, and the root and head counts. Traversals cost
/// array reads instead of RocksDB lookups (an 80k-event ancestor walk: 18 ms instead of a third of
/// a second), a by-type or by-stream read scans a column instead of an index family, and appends
/// store one `IndexBlock` per commit group instead of index keys per event.
///
/// The `index` family is its durable form: `load` rebuilds it at open from the blocks; the writer
/// extends it after each commit group is written and before the group is published, so a reader
/// that sees `lastID` sees every link, type and stream up to it.
///
/// Layout (ids and edge indexes are 32-bit; `capacity` bounds both):
/// - `parentEnd[id]`: end offset of `id`'s parents in `parentList` (`parentEnd[0] = 0`), so
///   `parentList[parentEnd[id-1] ..< parentEnd[id]]` are its parents, in stored order;
/// - `childHead[id]`: 1 + the edge index of `id`'s newest child edge, 0 when it has none;
/// - per edge `e` (= its position in `parentList`): `edgeChild[e]`, the child holding it, and
///   `edgeNext[e]`, 1 + the parent's next older child edge. Child lists are thus newest-first
///   linked lists that only ever grow at the head;
/// - `typeOf[id]`, `streamOf[id]`: dictionary ids (`streamOf` 0: no stream).
///
/// Memory: 16 bytes per event plus 12 per edge (about 320 MB for 10M events with 13M edges),
/// allocated in fixed chunks that never move, so readers need no lock: the writer fills slots,
/// then publishes with a release store (`published`, and each `childHead` store); readers load
/// with acquire and only touch what was published before.
///
/// A pruned store (docs/STORAGE.md, "The pruned prefix") loads only the events from its first id:
/// the slots below stay zero (calloc'd pages that are never touched cost no memory), `firstLive`
/// keeps every scan and count above them, and a live event's link to a pruned parent stays in its
/// parent list (so a walk sees where the horizon cut it) without counting that parent as a head.
///
/// Thread-safety: one writer (the store's writer thread, or `load` before the store is shared),
/// any number of readers.
@usableFromInline
final class LogIndex: @unchecked Sendable {
    /// Events and edges one store can hold.
    static let capacity = Int(UInt32.max) - 1

    private let parentEnd = Chunks<UInt32>()
    private let parentList = Chunks<UInt32>()
    private let childHead = Chunks<Atomic<UInt32>>()
    private let edgeChild = Chunks<UInt32>()
    private let edgeNext = Chunks<UInt32>()
    private let typeOf = Chunks<UInt32>()
    private let streamOf = Chunks<UInt32>()
    /// Ids `1...published` are readable.
    private let published = Atomic<Int>(0)
    private let roots = Atomic<Int>(0)
    private let heads = Atomic<Int>(0)
    /// Applier-side edge count (of the loaded events: a pruned prefix's links are `edgeBase`).
    private(set) var edgeCount = 0
    /// Parent links of the events pruned before this index was loaded.
    private var edgeBase = 0
    /// The lowest id that is not pruned.
    private let firstLive = Atomic<Int>(1)
    /// Held by every change (append, truncate, prune): a prune runs on a maintenance thread
    /// while the applier appends, and both move the root and head counters. Uncontended but for
    /// a prune, so appends pay one lock per commit group.
    private let changing = Mutex(())
    /// The event that first used each type and stream id (index `id - 1`): dictionary ids are
    /// allocated in order as events first use a name, so the highest id used through event x is
    /// a binary search here (`dictionaryIDs(through:)`, for reading commit groups back).
    private let firstUse = Mutex<(types: [EventID], streams: [EventID])>(([], []))
    /// Applier-side: how many type and stream ids `firstUse` holds (no lock unless a new one appears).
    private var typesUsed: UInt32 = 0
    private var streamsUsed: UInt32 = 0

    init() {
        parentEnd.ensure(0)
        parentEnd[0] = 0
        childHead.ensure(0)
    }

    /// The last id whose entries are readable.
    var lastID: EventID { EventID(published.load(ordering: .acquiring)) }
    /// The lowest id that is not pruned (1 for a store that never pruned).
    var firstID: EventID { EventID(firstLive.load(ordering: .acquiring)) }
    /// Events without parents, and without children, among `1...lastID` (read `lastID` first).
    var rootCount: Int { roots.load(ordering: .acquiring) }
    var headCount: Int { heads.load(ordering: .acquiring) }

    /// Appends the next events (ids `lastID + 1` onwards, in order). The applier only; the
    /// sequencer checks `capacity` before it stages an event.
    func append<S: Sequence>(_ entries: S) where S.Element == IndexBlock.Entry {
        changing.withLock { _ in appendLocked(entries) }
    }

    private func appendLocked<S: Sequence>(_ entries: S) where S.Element == IndexBlock.Entry {
        var id = published.load(ordering: .relaxed)
        var rootsAdded = 0
        var headsAdded = 0
        for entry in entries {
            id += 1
            precondition(id <= Self.capacity && edgeCount + entry.parents.count <= Self.capacity, "log index over capacity")
            parentEnd.ensure(id)
            childHead.ensure(id)
            typeOf.ensure(id)
            streamOf.ensure(id)
            typeOf[id] = entry.type
            streamOf[id] = entry.stream
            if entry.type > typesUsed || entry.stream > streamsUsed {
                firstUse.withLock { uses in
                    while UInt32(uses.types.count) < entry.type { uses.types.append(EventID(id)) }
                    while UInt32(uses.streams.count) < entry.stream { uses.streams.append(EventID(id)) }
                }
                typesUsed = max(typesUsed, entry.type)
                streamsUsed = max(streamsUsed, entry.stream)
            }
            if entry.parents.isEmpty { rootsAdded += 1 }
            headsAdded += 1
            for parent in entry.parents {
                let e = edgeCount
                parentList.ensure(e)
                edgeChild.ensure(e)
                edgeNext.ensure(e)
                parentList[e] = UInt32(parent)
                edgeChild[e] = UInt32(id)
                let head = childHead.slot(Int(parent)).pointee.load(ordering: .relaxed)
                if head == 0, Int(parent) >= firstLive.load(ordering: .relaxed) { headsAdded -= 1 }
                edgeNext[e] = head
                edgeCount += 1
                childHead.slot(Int(parent)).pointee.store(UInt32(edgeCount), ordering: .releasing)
            }
            parentEnd[id] = UInt32(edgeCount)
        }
        roots.store(roots.load(ordering: .relaxed) + rootsAdded, ordering: .releasing)
        heads.store(heads.load(ordering: .relaxed) + headsAdded, ordering: .releasing)
        published.store(id, ordering: .releasing)
    }

    /// Drops the events after `last` (a follower truncating a tail its new leader does not have):
    /// the published id goes down first, so new readers stop at `last`, then each dropped edge is
    /// unlinked from its parent's child list, newest first, which restores every list exactly as
    /// it was after `last`. The applier only. A reader that loaded the old last id before this may
    /// see a mix of old and new entries for the dropped ids (chunks never move, so never invalid
    /// memory); docs/REPLICATION.md says what a truncation means for readers.
    func truncate(after last: EventID) {
        changing.withLock { _ in truncateLocked(after: last) }
    }

    private func truncateLocked(after last: EventID) {
        let old = published.load(ordering: .relaxed)
        let keep = Int(last)
        guard keep < old else { return }
        published.store(keep, ordering: .releasing)
        var rootsRemoved = 0
        var headsDelta = 0
        for id in stride(from: old, to: keep, by: -1) {
            let start = Int(parentEnd[id - 1])
            let end = Int(parentEnd[id])
            if start == end { rootsRemoved += 1 }
            // Its children came later and are gone already: it was a head until now.
            if childHead.slot(id).pointee.load(ordering: .relaxed) == 0 { headsDelta -= 1 }
            for e in stride(from: end - 1, through: start, by: -1) {
                let parent = Int(parentList[e])
                let next = edgeNext[e]
                childHead.slot(parent).pointee.store(next, ordering: .releasing)
                if next == 0, parent >= firstLive.load(ordering: .relaxed) { headsDelta += 1 }
            }
        }
        edgeCount = Int(parentEnd[keep])
        let first = firstLive.load(ordering: .relaxed)
        precondition(first == 1 || keep >= first, "truncation into the pruned prefix")
        roots.store(roots.load(ordering: .relaxed) - rootsRemoved, ordering: .releasing)
        heads.store(heads.load(ordering: .relaxed) + headsDelta, ordering: .releasing)
        firstUse.withLock { uses in
            uses.types.removeAll { $0 > last }
            uses.streams.removeAll { $0 > last }
            typesUsed = UInt32(uses.types.count)
            streamsUsed = UInt32(uses.streams.count)
        }
    }

    /// Parents of `id` in stored order; `id` must be in `1...lastID`.
    @usableFromInline
    func parents(of id: EventID) -> [EventID] {
        let i = Int(id)
        let start = Int(parentEnd[i - 1])
        let end = Int(parentEnd[i])
        var result: [EventID] = []
        result.reserveCapacity(end - start)
        for e in start ..< end { result.append(EventID(parentList[e])) }
        return result
    }

    /// The highest type and stream ids used by the events `1...id`.
    func dictionaryIDs(through id: EventID) -> (type: UInt32, stream: UInt32) {
        firstUse.withLock { uses in
            func count(_ firsts: [EventID]) -> UInt32 {
                UInt32(firsts.partitioningIndex { $0 > id })
            }
            return (count(uses.types), count(uses.streams))
        }
    }

    /// Parent links of the events `1...id` (`id` in `firstID - 1 ... lastID`).
    func edges(through id: EventID) -> Int {
        edgeBase + Int(parentEnd[Int(id)])
    }

    func hasParents(_ id: EventID) -> Bool {
        parentEnd[Int(id) - 1] != parentEnd[Int(id)]
    }

    func hasChildren(_ id: EventID, upTo: EventID) -> Bool {
        var link = childHead.slot(Int(id)).pointee.load(ordering: .acquiring)
        while link != 0 {
            let e = Int(link - 1)
            if EventID(edgeChild[e]) <= upTo { return true }
            link = edgeNext[e]
        }
        return false
    }

    /// Children of `id` up to `upTo`, ascending; at most `limit` (`limit + 1` lets callers detect
    /// overflow). `id` must be in `1...lastID`.
    @usableFromInline
    func children(of id: EventID, upTo: EventID, limit: Int = Int.max) -> [EventID] {
        // The list runs newest first, so the lowest `limit` come only from the whole of it
        // (without a bound the walk never gives up).
        var result = children(of: id, upTo: upTo, countMax: .max) ?? []
        if result.count > limit { result.removeLast(result.count - limit) }
        return result
    }

    /// Children of `id` up to `upTo`, ascending, or nil once more than `countMax` are found:
    /// a hub's whole list is not walked for a caller that would refuse it.
    func children(of id: EventID, upTo: EventID, countMax: Int) -> [EventID]? {
        var result: [EventID] = []
        var link = childHead.slot(Int(id)).pointee.load(ordering: .acquiring)
        while link != 0 {
            let e = Int(link - 1)
            let child = EventID(edgeChild[e])
            if child <= upTo {
                guard result.count < countMax else { return nil }
                result.append(child)
            }
            link = edgeNext[e]
        }
        result.reverse()
        return result
    }

    func typeID(of id: EventID) -> UInt32 { typeOf[Int(id)] }
    func streamID(of id: EventID) -> UInt32 { streamOf[Int(id)] }

    /// Ids in `after+1 ... upTo` whose type and stream match (nil: any), ascending: at most
    /// `limit` of them, examining at most `scanMax` ids. `next` is the last id examined.
    func scan(type: UInt32?, stream: UInt32?, after: EventID, upTo: EventID, limit: Int, scanMax: Int) -> (ids: [EventID], next: EventID) {
        var ids: [EventID] = []
        var id = max(after, firstID - 1)
        var examined = 0
        while id < upTo, ids.count < limit, examined < scanMax {
            id += 1
            examined += 1
            if let type, typeOf[Int(id)] != type { continue }
            if let stream, streamOf[Int(id)] != stream { continue }
            ids.append(id)
        }
        return (ids, id)
    }

    /// The same, newest first: ids in `before-1` down to the first id.
    func scanBackward(type: UInt32?, stream: UInt32?, before: EventID, limit: Int, scanMax: Int) -> [EventID] {
        var ids: [EventID] = []
        var id = before
        var examined = 0
        let first = firstID
        while id > first, ids.count < limit, examined < scanMax {
            id -= 1
            examined += 1
            if let type, typeOf[Int(id)] != type { continue }
            if let stream, streamOf[Int(id)] != stream { continue }
            ids.append(id)
        }
        return ids
    }

    /// Events without parents (roots) or without children up to `upTo` (heads), ascending, at
    /// most `limit`. A scan of the columns: about 2 ms per million events.
    func boundary(roots: Bool, upTo: EventID, limit: Int) -> [EventID] {
        var ids: [EventID] = []
        let first = firstID
        guard upTo >= first else { return ids }
        for id in first...upTo where ids.count < limit {
            if roots ? !hasParents(id) : !hasChildren(id, upTo: upTo) { ids.append(id) }
        }
        return ids
    }

    /// Drops the events below `first` from every count and scan (a prune): they stop being roots
    /// or heads. Their slots keep what they held, which no reader looks at any more.
    func prune(below first: EventID) {
        changing.withLock { _ in pruneLocked(below: first) }
    }

    private func pruneLocked(below first: EventID) {
        let old = firstLive.load(ordering: .relaxed)
        guard Int(first) > old else { return }
        var rootsRemoved = 0
        var headsRemoved = 0
        for id in old ..< Int(first) {
            if !hasParents(EventID(id)) { rootsRemoved += 1 }
            if childHead.slot(id).pointee.load(ordering: .acquiring) == 0 { headsRemoved += 1 }
        }
        firstLive.store(Int(first), ordering: .releasing)
        roots.subtract(rootsRemoved, ordering: .releasing)
        heads.subtract(headsRemoved, ordering: .releasing)
    }

    /// Rebuilds the index from the `index` family, whose blocks must tile `firstID...lastID`
    /// exactly (`firstID` is 1 unless the store was pruned).
    static func load(_ storage: LogStorage, lastID: EventID, pruned: PrunedPrefix? = nil) throws(StorageError) -> LogIndex {
        guard lastID <= EventID(capacity) else {
            throw StorageError(.invalidArgument, "the store holds \(lastID) events, more than the \(capacity) one store can index")
        }
        let index = LogIndex()
        var next: EventID = 1
        if let pruned {
            guard pruned.firstID <= lastID + 1 else {
                throw StorageError(.corruption, "meta: the pruned prefix ends at \(pruned.firstID - 1), past the log's last id \(lastID)")
            }
            next = pruned.firstID
            let below = Int(next - 1)
            for chunks in [index.parentEnd, index.typeOf, index.streamOf] { chunks.ensure(below) }
            index.childHead.ensure(below)
            index.edgeBase = Int(pruned.edgesBelow)
            index.firstLive.store(Int(next), ordering: .relaxed)
            // First uses below the prefix are not known by id any more, only by count.
            index.firstUse.withLock { uses in
                uses.types = Array(repeating: next - 1, count: Int(pruned.typesBelow))
                uses.streams = Array(repeating: next - 1, count: Int(pruned.streamsBelow))
            }
            index.typesUsed = pruned.typesBelow
            index.streamsUsed = pruned.streamsBelow
            index.published.store(below, ordering: .releasing)
        }
        let it = try storage.db.iterator(storage.cf(.index), fillCache: false)
        it.seek(KeySpace.id(next))
        while it.isValid {
            let first = it.withKey { k in LogStorage.be64(k, at: 0) }
            guard first == next else {
                throw StorageError(.corruption, "index: block at \(first) where \(next) was expected")
            }
            let block = try IndexBlock.decode(first: first, it.value)
            let edges = block.entries.reduce(0) { $0 + $1.parents.count }
            guard first - 1 + EventID(block.entries.count) <= lastID, index.edgeCount + edges <= capacity else {
                throw StorageError(.corruption, "index: block at \(first) runs past the log's last id \(lastID)")
            }
            index.append(block.entries)
            next = first + EventID(block.entries.count)
            it.next()
        }
        try it.checkStatus()
        guard next == lastID + 1 else {
            throw StorageError(.corruption, "index: blocks end at \(next - 1) but the log ends at \(lastID)")
        }
        return index
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
        directorySize = LogIndex.capacity >> Self.shift + 1
        directory = .allocate(capacity: directorySize)
        directory.initialize(repeating: nil, count: directorySize)
    }

    deinit {
        for i in 0 ..< allocated { free(directory[i]) }
        directory.deallocate()
    }

    /// Makes slot `index` addressable (zero-filled). The applier only.
    func ensure(_ index: Int) {
        let chunk = index >> Self.shift
        while allocated <= chunk {
            // calloc: zeroed pages are mapped lazily, and zero is every element's initial value.
            guard let raw = calloc(Self.chunkSize, MemoryLayout<Element>.stride) else {
                fatalError("out of memory growing the log index")
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
