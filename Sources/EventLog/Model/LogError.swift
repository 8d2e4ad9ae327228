/// The one error type of the EventLog module. The server maps codes to HTTP statuses in one place.
public struct LogError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalidArgument, notFound, conflict, overloaded, limitExceeded, closed, storage, notLeader, pruned
        }
        private let value: Value
        /// Bad input: nothing was stored.
        public static let invalidArgument = Code(value: .invalidArgument)
        /// A named event or parent does not exist.
        public static let notFound = Code(value: .notFound)
        /// A key was reused for different content.
        public static let conflict = Code(value: .conflict)
        /// The writer queue is full; retry later.
        public static let overloaded = Code(value: .overloaded)
        /// A bounded read or traversal would exceed its limit.
        public static let limitExceeded = Code(value: .limitExceeded)
        /// The store is closed or closing.
        public static let closed = Code(value: .closed)
        /// The storage engine failed; see `cause`.
        public static let storage = Code(value: .storage)
        /// This store follows a leader: appends go to the leader.
        public static let notLeader = Code(value: .notLeader)
        /// The event lies below the store's pruned prefix: only the snapshot it was pruned below holds it.
        public static let pruned = Code(value: .pruned)
        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String
    /// The request field at fault (e.g. "parents", "type"), when there is one.
    public var field: String?
    /// Index of the offending event within its batch, when there is one.
    public var index: Int?
    public var cause: StorageError?

    public init(_ code: Code, _ message: String, field: String? = nil, index: Int? = nil, cause: StorageError? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.index = index
        self.cause = cause
    }

    init(_ storage: StorageError) {
        self.init(storage.code == .closed ? .closed : .storage, storage.message, cause: storage)
    }

    public var description: String {
        var text = message
        if let index { text = "event \(index): " + text }
        return text
    }
}
