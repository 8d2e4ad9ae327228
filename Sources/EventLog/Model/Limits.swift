/// Every bound on user-controlled input, in one place: the store's and the server's (request
/// bodies, trees, queries, streams). Units are last in the names. `banyan serve` sets them from
/// its flags (docs/OPERATIONS.md lists both); the server reads them from its store's options, so
/// there is one copy.
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
    /// Memory of the sequencer's filter of idempotency keys (1.25 bytes a key in a full layer, a
    /// layer being added as the last fills). Past it the filter is dropped and every key is looked
    /// up in storage, as with 0. At least 1 MiB when not 0.
    public var keyFilterBytesMax = 64 << 20
    /// The smallest non-zero `keyFilterBytesMax`: its smallest layer is 128 KiB and a quarter of
    /// the bound must hold one.
    public static let keyFilterBytesMin = 1 << 20
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

    // MARK: requests

    /// Bytes of one `POST /v1/events` body (`--body-bytes-max`).
    public var appendBodyBytesMax = 64 << 20
    /// Bytes of one `POST /v1/query` body.
    public var queryBodyBytesMax = 1 << 20
    /// Bytes of a request body on the CelestialTree routes and of one imported line: room for
    /// the largest payload and message an event may hold, and at least 2 MiB + 64 KiB.
    public var eventBodyBytesMax: Int { max((2 << 20) + (64 << 10), payloadBytesMax + messageBytesMax + (64 << 10)) }
    /// Ids one filtered log read (`GET /v1/events`, an SSE page) may examine before it answers
    /// with a `next` cursor, so a selective filter cannot make one request read the whole log.
    public var scanIDsMax = 100_000

    // MARK: CelestialTree trees

    /// Bytes of one tree response (meta views repeat payloads, so nodes alone do not bound size).
    public var treeBytesMax = 256 << 20
    /// Time to build one tree response before it is abandoned with an error.
    public var treeTime: Duration = .seconds(10)
    /// Ids in one `POST /descendants` or `/provenance` request.
    public var treeBatchIDsMax = 1_000
    /// Bytes of `?view=meta` tree members kept for the trees that meet the same events again, 0
    /// for none; one event's members are kept only if they take at most a 256th of this.
    public var treeMetaCacheBytesMax = 64 << 20

    // MARK: queries

    /// Node and time budgets of a `/v1/query` that names none, and the most one may ask for.
    public var queryNodesDefault = 1_000_000
    public var queryNodesMax = 10_000_000
    public var queryTimeDefault: Duration = .seconds(5)
    public var queryTimeMax: Duration = .seconds(30)
    /// Bytes of one `/v1/query` page; a page ends early, with a cursor, past it (after one result).
    public var queryPageBytesMax = 16 << 20
    /// Bytes of query answers a server keeps between pages (`/v1/query` paging), 0 for none;
    /// one answer is kept only if it takes at most a quarter of this.
    public var queryAnswerCacheBytesMax = 64 << 20
    /// Tokens of one query text, values of one `in (...)` list, nesting of parentheses and set
    /// operations, and the largest `depth <= n` bound. Fixed at these defaults: the parser reads
    /// them before any server is involved.
    public var queryTokensMax = 10_000
    public var queryInListMax = 1_000
    public var queryNestingMax = 64
    public var queryHopsMax = 1_000_000

    // MARK: streams

    /// Open SSE streams; one more is refused with 503.
    public var streamsMax = 1_024
    /// Events one SSE frame batch reads from the log at a time.
    public var streamReadEventsMax = 512

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
        try check(appendBodyBytesMax >= 1 && queryBodyBytesMax >= 1 && scanIDsMax >= 1, "request limits must be >= 1")
        try check(treeBytesMax >= 1 && treeBatchIDsMax >= 1 && treeTime > .zero, "tree limits must be positive")
        try check(queryNodesDefault >= 1 && queryNodesDefault <= queryNodesMax, "queryNodesDefault must be 1...queryNodesMax")
        try check(queryTimeDefault > .zero && queryTimeDefault <= queryTimeMax, "queryTimeDefault must be positive and at most queryTimeMax")
        try check(queryAnswerCacheBytesMax >= 0, "queryAnswerCacheBytesMax must be >= 0")
        try check(treeMetaCacheBytesMax >= 0, "treeMetaCacheBytesMax must be >= 0")
        try check(keyFilterBytesMax == 0 || keyFilterBytesMax >= Self.keyFilterBytesMin, "keyFilterBytesMax must be 0 (no key filter) or at least 1 MiB")
        try check(queryPageBytesMax >= 1 && queryTokensMax >= 1 && queryInListMax >= 1 && queryNestingMax >= 1 && queryHopsMax >= 1, "query limits must be >= 1")
        try check(streamsMax >= 1 && streamReadEventsMax >= 1, "stream limits must be >= 1")
    }
}
