import CRocksDB

/// Runs a RocksDB C call that reports failure through a trailing `char** errptr`, turns a non-nil
/// message into a `StorageError` and frees the malloc'd string, so no call site touches `errptr`.
@inline(__always)
func withErrorPointer<T>(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> T) throws(StorageError) -> T {
    var err: UnsafeMutablePointer<CChar>? = nil
    let result = body(&err)
    if let err {
        let message = String(cString: err)
        rocksdb_free(err)
        throw StorageError(classify(message), "rocksdb: \(message)")
    }
    return result
}

private func classify(_ message: String) -> StorageError.Code {
    if message.contains("lock") && (message.contains("LOCK") || message.contains("Resource temporarily unavailable")) {
        return .locked
    }
    if message.hasPrefix("Corruption") { return .corruption }
    if message.hasPrefix("Invalid argument") { return .invalidArgument }
    return .io
}
