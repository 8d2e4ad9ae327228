import CRocksDB

/// A forward/backward cursor over one column family, optionally bounded to `[lower, upper)`.
///
/// RocksDB keeps the bound pointers without copying them, so this class owns the bound buffers
/// for the iterator's whole lifetime (a Swift array passed inline would dangle). Not thread-safe:
/// one iterator belongs to one reader. Handles are destroyed in `deinit`.
final class RocksIterator {
    private let handle: OpaquePointer
    private let readOptions: OpaquePointer
    private let lowerBound: UnsafeMutableBufferPointer<CChar>?
    private let upperBound: UnsafeMutableBufferPointer<CChar>?

    init(db: OpaquePointer, family: RocksDB.Family, lower: [UInt8]?, upper: [UInt8]?, fillCache: Bool) {
        readOptions = rocksdb_readoptions_create()
        rocksdb_readoptions_set_fill_cache(readOptions, fillCache ? 1 : 0)
        lowerBound = RocksIterator.copy(lower)
        upperBound = RocksIterator.copy(upper)
        if let lowerBound {
            rocksdb_readoptions_set_iterate_lower_bound(readOptions, lowerBound.baseAddress, lowerBound.count)
        }
        if let upperBound {
            rocksdb_readoptions_set_iterate_upper_bound(readOptions, upperBound.baseAddress, upperBound.count)
        }
        handle = rocksdb_create_iterator_cf(db, readOptions, family.handle)
    }

    deinit {
        rocksdb_iter_destroy(handle)
        rocksdb_readoptions_destroy(readOptions)
        lowerBound?.deallocate()
        upperBound?.deallocate()
    }

    private static func copy(_ bytes: [UInt8]?) -> UnsafeMutableBufferPointer<CChar>? {
        guard let bytes else { return nil }
        let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(bytes.count, 1))
        for (i, b) in bytes.enumerated() { buffer[i] = CChar(bitPattern: b) }
        return UnsafeMutableBufferPointer(rebasing: buffer[0..<bytes.count])
    }

    var isValid: Bool { rocksdb_iter_valid(handle) != 0 }

    func seekToFirst() { rocksdb_iter_seek_to_first(handle) }
    func seekToLast() { rocksdb_iter_seek_to_last(handle) }
    func next() { rocksdb_iter_next(handle) }
    func prev() { rocksdb_iter_prev(handle) }

    func seek(_ key: [UInt8]) {
        key.withUnsafeBufferPointer { k in
            k.withMemoryRebound(to: CChar.self) { rocksdb_iter_seek(handle, $0.baseAddress, $0.count) }
        }
    }

    /// Positions at the last key <= `key`.
    func seekForPrev(_ key: [UInt8]) {
        key.withUnsafeBufferPointer { k in
            k.withMemoryRebound(to: CChar.self) { rocksdb_iter_seek_for_prev(handle, $0.baseAddress, $0.count) }
        }
    }

    /// The current key, copied out. Only valid while `isValid`.
    var key: [UInt8] {
        var length = 0
        let pointer = rocksdb_iter_key(handle, &length)
        return RocksIterator.bytes(pointer, length)
    }

    /// The current value, copied out. Only valid while `isValid`.
    var value: [UInt8] {
        var length = 0
        let pointer = rocksdb_iter_value(handle, &length)
        return RocksIterator.bytes(pointer, length)
    }

    /// Reads the current key in place, for scans that only need a few bytes of it.
    func withKey<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        var length = 0
        let pointer = rocksdb_iter_key(handle, &length)
        return body(UnsafeRawBufferPointer(start: pointer, count: length))
    }

    /// Reads the current value in place.
    func withValue<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        var length = 0
        let pointer = rocksdb_iter_value(handle, &length)
        return body(UnsafeRawBufferPointer(start: pointer, count: length))
    }

    /// Throws if the iteration stopped because of an error rather than the end of the range.
    func checkStatus() throws(StorageError) {
        try withErrorPointer { rocksdb_iter_get_error(handle, $0) }
    }

    private static func bytes(_ pointer: UnsafePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }
}
