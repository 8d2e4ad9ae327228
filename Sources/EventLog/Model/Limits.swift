/// Every bound on user-controlled input, in one place. Units are last in the names.
///
/// Relationships are checked by `validate()` at start-up and in a test.
public struct Limits: Sendable, Hashable {
    /// Parents (ids + keys) one event may name.
    public var parentsPerEventMax = 1_024
    /// UTF-8 bytes of an event type.
    public var typeBytesMax = 256
    /// Bytes of an event's compact JSON payload.
    public var payloadBytesMax = 1 << 20
    /// UTF-8 bytes of a message.
    public var messageBytesMax = 1 << 20
    /// UTF-8 bytes of a key or a stream name.
    public var keyBytesMax = 512
    public var streamBytesMax = 256
    /// Events in one append batch.
    public var batchEventsMax = 10_000
    /// Events the writer gathers into one commit group (one WriteBatch, one fsync).
    public var commitGroupEventsMax = 20_000
    /// Events waiting for the writer; past it appends fail with `.overloaded` instead of growing memory.
    public var writerQueueEventsMax = 200_000
    /// Nodes (including repeated references) in one CelestialTree descendants/provenance tree.
    public var treeNodesMax = 100_000
    /// Events one traversal (ancestors, descendants) may visit.
    public var traversalNodesMax = 10_000_000
    /// Ids in one list answer (roots, heads, children, reachable roots).
    public var listIDsMax = 100_000
    /// Events in one range read.
    public var readEventsMax = 10_000
    /// Ids one by-type or by-stream read may examine in the in-memory columns (a few ms per
    /// million); it then answers what it found, with a cursor where paging applies.
    public var columnScanIDsMax = 50_000_000
    /// Record bytes in one range read (at least one event is always returned).
    public var readBytesMax = 16 << 20
    /// A segment is sealed when it holds this many events or bytes.
    public var segmentEventsMax = 65_536
    public var segmentBytesMax = 64 << 20
    /// JSON nesting accepted in a payload or request body.
    public var jsonDepthMax = 512

    public init() {}

    /// Throws if the limits contradict each other.
    public func validate() throws(LogError) {
        func check(_ ok: Bool, _ message: String) throws(LogError) {
            if !ok { throw LogError(.invalidArgument, "limits: \(message)") }
        }
        try check(parentsPerEventMax >= 1, "parentsPerEventMax must be >= 1")
        try check(typeBytesMax >= 1, "typeBytesMax must be >= 1")
        try check(batchEventsMax >= 1, "batchEventsMax must be >= 1")
        try check(commitGroupEventsMax >= batchEventsMax, "commitGroupEventsMax must be >= batchEventsMax (a batch is never split)")
        try check(writerQueueEventsMax >= commitGroupEventsMax, "writerQueueEventsMax must be >= commitGroupEventsMax")
        try check(treeNodesMax >= 1 && listIDsMax >= 1 && readEventsMax >= 1, "tree/list/read limits must be >= 1")
        try check(segmentEventsMax >= 1 && segmentBytesMax >= 1, "segment limits must be >= 1")
        try check(jsonDepthMax >= 1, "jsonDepthMax must be >= 1")
    }
}
