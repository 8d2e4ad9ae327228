/// One stored record, checked and read in place (`RecordCodec.parse`): where each member is in
/// its bytes. `event()` builds the `Event`; `EventJSON` writes the members straight from the
/// bytes, so a query page or a tree's meta members cost no `Event` per record (building one,
/// its strings, parent array and payload copy, was half of reading a record for a page).
public struct StoredRecord: Sendable {
    public let id: EventID
    let bytes: [UInt8]
    public let epoch: UInt64
    public let timeUnixNano: Int64
    let type: Range<Int>
    /// The encoded parent list (count, then deltas), checked by `parse`.
    let parents: Range<Int>
    public let parentCount: Int
    let key: Range<Int>?
    let stream: Range<Int>?
    var message: Range<Int>?
    /// Compact JSON text, spliced into answers as-is (as `Event.payload` is).
    var payload: Range<Int>?
    public internal(set) var compaction: Event.Compaction?
    /// `parse` checked the strings: only then may `EventJSON` write them from the bytes.
    let textChecked: Bool

    init(
        id: EventID, bytes: [UInt8], epoch: UInt64, timeUnixNano: Int64, type: Range<Int>, parents: Range<Int>, parentCount: Int,
        key: Range<Int>?, stream: Range<Int>?, textChecked: Bool
    ) {
        self.id = id
        self.bytes = bytes
        self.epoch = epoch
        self.timeUnixNano = timeUnixNano
        self.type = type
        self.parents = parents
        self.parentCount = parentCount
        self.key = key
        self.stream = stream
        self.textChecked = textChecked
    }

    /// The event, its strings checked to be UTF-8 as they are decoded (a record parsed without
    /// `checkText` is checked here, once).
    public func event() throws(StorageError) -> Event {
        func text(_ range: Range<Int>) throws(StorageError) -> String {
            guard let s = bytes[range].withUnsafeBytes(ByteReader.validString) else { throw Self.notUTF8(at: range.upperBound) }
            return s
        }
        var event = Event(
            id: id, epoch: epoch, timeUnixNano: timeUnixNano, type: try text(type), parents: Array(parentIDs), key: try key.map(text),
            stream: try stream.map(text))
        event.message = try message.map(text)
        event.payload = payload.map { Array(bytes[$0]) }
        event.compaction = compaction
        return event
    }

    static func notUTF8(at offset: Int) -> StorageError {
        StorageError(.corruption, "invalid UTF-8 in stored string at offset \(offset)")
    }

    /// The parent ids, in the event's own order, read from the list `parse` checked.
    var parentIDs: ParentIDs {
        var at = parents.lowerBound
        let list = bytes[..<parents.upperBound]
        let count = Varint.read(list, at: &at) ?? 0
        return ParentIDs(id: id, list: list, at: at, left: count)
    }

    struct ParentIDs: Sequence, IteratorProtocol {
        let id: EventID
        let list: ArraySlice<UInt8>
        var at: Int
        var left: UInt64

        var underestimatedCount: Int { Int(left) }

        mutating func next() -> EventID? {
            // `parse` checked the list: the count and every delta are there and in range.
            guard left > 0, let delta = Varint.read(list, at: &at) else { return nil }
            left -= 1
            return id - delta
        }
    }

    /// Whether stored string bytes are UTF-8: at once when they are ASCII (most names, keys and
    /// messages), else by decoding them (`ByteReader.validString`).
    static func isUTF8(_ raw: ArraySlice<UInt8>) -> Bool {
        let ascii = raw.withUnsafeBufferPointer { buffer in
            var high: UInt8 = 0
            for byte in buffer { high |= byte }
            return high < 0x80
        }
        return ascii || raw.withUnsafeBytes(ByteReader.validString) != nil
    }
}
