/// An event's position in the log: dense, starting at 1, assigned by the leader's single writer.
public typealias EventID = UInt64

/// One stored event.
///
/// Invariants (checked on append and again by `verify`): `id >= 1`; every parent is `< id` and
/// exists; parents are distinct and keep the order the client gave; `type` is non-empty UTF-8 of
/// at most `Limits.typeBytesMax` bytes; `payload`, when present, is compact JSON text.
public struct Event: Sendable, Hashable {
    public var id: EventID
    /// The leadership term in which the event was appended (1 on a store that never failed over).
    public var epoch: UInt64
    public var timeUnixNano: Int64
    public var type: String
    public var parents: [EventID]
    /// Client idempotency key / external id, unique in the store.
    public var key: String?
    /// Stream name grouping events for in-order reads.
    public var stream: String?
    /// Free text; nil when absent (an empty message is stored as absent, as CelestialTree does).
    public var message: String?
    /// Compact JSON text of the payload, spliced into responses as-is.
    public var payload: [UInt8]?
    /// Set when compaction dropped the message and payload (docs/OPERATIONS.md, Compaction):
    /// what they were, by size and checksum. `message` and `payload` are then nil.
    public var compaction: Compaction?

    /// What a compacted event had: the UTF-8 bytes of its message and the compact JSON bytes of
    /// its payload, with their CRC-32C (nil: it had none).
    public struct Compaction: Sendable, Hashable {
        public var messageBytes: UInt64?
        public var messageCRC: UInt32?
        public var payloadBytes: UInt64?
        public var payloadCRC: UInt32?

        public init(messageBytes: UInt64? = nil, messageCRC: UInt32? = nil, payloadBytes: UInt64? = nil, payloadCRC: UInt32? = nil) {
            self.messageBytes = messageBytes
            self.messageCRC = messageCRC
            self.payloadBytes = payloadBytes
            self.payloadCRC = payloadCRC
        }

        /// Whether `message` and `payload` are what was dropped.
        public func matches(message: String?, payload: [UInt8]?) -> Bool {
            func same(_ bytes: [UInt8]?, _ size: UInt64?, _ crc: UInt32?) -> Bool {
                guard let bytes else { return size == nil }
                return size == UInt64(bytes.count) && crc == CRC32C.checksum(bytes)
            }
            return same(message.map { Array($0.utf8) }, messageBytes, messageCRC) && same(payload, payloadBytes, payloadCRC)
        }
    }

    public init(
        id: EventID, epoch: UInt64, timeUnixNano: Int64, type: String, parents: [EventID],
        key: String? = nil, stream: String? = nil, message: String? = nil, payload: [UInt8]? = nil
    ) {
        self.id = id
        self.epoch = epoch
        self.timeUnixNano = timeUnixNano
        self.type = type
        self.parents = parents
        self.key = key
        self.stream = stream
        self.message = message
        self.payload = payload
    }

    /// The payload parsed back into a value (nil when there is none).
    public var payloadValue: JSONValue? {
        guard let payload else { return nil }
        return try? JSONParser.parse(payload)
    }
}

/// What a client asks to append. Validated by the writer against `Limits` and the store.
public struct AppendRequest: Sendable, Hashable {
    /// Types starting with this are the server's own (`banyan.epoch`, `banyan.lost`, the
    /// maintenance events); clients may not append them over HTTP, because some are acted on
    /// (a `banyan.compaction.started` event makes every node compact). `banyan import` may.
    public static let reservedTypePrefix = "banyan."

    /// Refuses a type of the server's own (`reservedTypePrefix`).
    public func refuseReservedType(index: Int? = nil) throws(LogError) {
        guard type.hasPrefix(Self.reservedTypePrefix) else { return }
        throw LogError(.invalidArgument, "types starting with \(Self.reservedTypePrefix) are reserved for the server's own events", field: "type", index: index)
    }

    public var type: String
    /// Parent ids; 0 and repeats are dropped (order kept), as CelestialTree does.
    public var parents: [EventID]
    /// Parents named by key; they may name events earlier in the same batch.
    public var parentKeys: [String]
    public var key: String?
    public var stream: String?
    public var message: String?
    /// Compact JSON text, produced from a `JSONValue` so it is valid by construction.
    public internal(set) var payload: [UInt8]?
    /// Original time of imported history; nil means the writer stamps the commit time.
    public var timeUnixNano: Int64?

    public init(
        type: String, parents: [EventID] = [], parentKeys: [String] = [], key: String? = nil,
        stream: String? = nil, message: String? = nil, payload: JSONValue? = nil, timeUnixNano: Int64? = nil
    ) {
        self.type = type
        self.parents = parents
        self.parentKeys = parentKeys
        self.key = key
        self.stream = stream
        self.message = (message?.isEmpty ?? true) ? nil : message
        self.payload = payload.map { $0.serialized() }
        self.timeUnixNano = timeUnixNano
    }
}

/// The answer for one appended event.
public struct AppendResult: Sendable, Hashable {
    public var id: EventID
    /// True when the key was already known: `id` is the original event's and nothing was stored.
    public var duplicate: Bool

    public init(id: EventID, duplicate: Bool) {
        self.id = id
        self.duplicate = duplicate
    }
}

/// A batch handed to `EventStore.append(_:durability:)` without a task, and what to call with
/// its receipt.
public struct AppendBatch: Sendable {
    public var requests: [AppendRequest]
    public var complete: @Sendable (Result<AppendReceipt, any Error>) -> Void

    public init(_ requests: [AppendRequest], complete: @escaping @Sendable (Result<AppendReceipt, any Error>) -> Void) {
        self.requests = requests
        self.complete = complete
    }
}

/// The answer for one appended batch.
public struct AppendReceipt: Sendable, Hashable {
    public var results: [AppendResult]
    /// True when the batch was fsynced before this answer; false under `--fsync interval|never`.
    public var durable: Bool
}
