/// Checks on open that the segment manifest agrees with the log, and rebuilds the open segment.
enum Recovery {
    /// Sealed segments must tile firstID...k (firstID: 1 unless pruned) without gaps or overlap and end at or before the log's end;
    /// the records after the last sealed segment form the open segment (re-read, checksums checked).
    static func openSegment(_ storage: LogStorage, firstID: EventID, lastID: EventID) throws(LogError) -> OpenSegment {
        try storageCall { () throws(StorageError) -> OpenSegment in
            let sealed = try storage.segments()
            var expected: EventID = firstID
            for entry in sealed {
                guard entry.first == expected else {
                    throw StorageError(.corruption, "segment manifest: segment starting at \(entry.first), expected \(expected)")
                }
                expected = entry.last + 1
            }
            guard expected - 1 <= lastID else {
                throw StorageError(.corruption, "segment manifest covers up to \(expected - 1) but the log ends at \(lastID)")
            }
            var segment = OpenSegment(first: expected)
            guard expected <= lastID else { return segment }
            let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(expected))
            it.seekToFirst()
            var id = expected
            while it.isValid {
                let key = it.key
                guard key.count == 8, key.be64(at: 0) == id else {
                    throw StorageError(.corruption, "log: expected id \(id) while rebuilding the open segment")
                }
                let record = it.value
                let event = try RecordCodec.decode(id: id, record)
                segment.add(id: id, timeUnixNano: event.timeUnixNano, record: record)
                id += 1
                it.next()
            }
            try it.checkStatus()
            guard id == lastID + 1 else { throw StorageError(.corruption, "log: open segment ends at \(id - 1), log at \(lastID)") }
            return segment
        }
    }
}
