import CRocksDB

/// A RocksDB write batch: puts and deletes applied atomically by `RocksDB.write`.
///
/// Not thread-safe: owned by the single writer. The C handle is destroyed in `deinit`.
final class RocksWriteBatch {
    let handle: OpaquePointer

    init() {
        handle = rocksdb_writebatch_create()
    }

    deinit {
        rocksdb_writebatch_destroy(handle)
    }

    func put(_ cf: RocksDB.Family, _ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBytes { k in value.withUnsafeBytes { v in put(cf, k, v) } }
    }

    /// Copies both into the batch, so they need not outlive the call.
    func put(_ cf: RocksDB.Family, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        rocksdb_writebatch_put_cf(
            handle, cf.handle, key.baseAddress?.assumingMemoryBound(to: CChar.self), key.count,
            value.baseAddress?.assumingMemoryBound(to: CChar.self), value.count)
    }

    func delete(_ cf: RocksDB.Family, _ key: [UInt8]) {
        key.withUnsafeBufferPointer { k in
            k.withMemoryRebound(to: CChar.self) { kc in
                rocksdb_writebatch_delete_cf(handle, cf.handle, kc.baseAddress, kc.count)
            }
        }
    }

    var count: Int { Int(rocksdb_writebatch_count(handle)) }

    func clear() {
        rocksdb_writebatch_clear(handle)
    }
}
