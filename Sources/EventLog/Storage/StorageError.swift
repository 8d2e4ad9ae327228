/// An operating error from the storage engine: the disk, the database files, or a record that
/// does not decode. Programmer errors are preconditions, never a `StorageError`.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case io, corruption, locked, closed, invalidArgument }
        private let value: Value
        /// RocksDB (or the file system under it) failed.
        public static let io = Code(value: .io)
        /// Bytes on disk do not decode or fail their checksum.
        public static let corruption = Code(value: .corruption)
        /// Another process holds the database lock.
        public static let locked = Code(value: .locked)
        /// The store was used after `close()`.
        public static let closed = Code(value: .closed)
        /// The database was opened with options it cannot honour (e.g. a missing column family).
        public static let invalidArgument = Code(value: .invalidArgument)
        public var description: String { "\(value)" }
    }

    public var code: Code
    /// What went wrong and, where we know, how to remedy it.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
