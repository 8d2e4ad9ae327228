import EventLog
import LineageQuery
import Foundation

/// Everything `banyan serve` can be told, with the defaults a fresh `banyan serve` uses.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7777
    /// Nodes in one CelestialTree tree response (all trees of a batch request together).
    public var treeNodesMax = 100_000
    /// Bytes of one tree response (meta views repeat payloads, so nodes alone do not bound size).
    public var treeBytesMax = 256 << 20
    /// Time to build one tree response before it is abandoned with an error.
    public var treeTimeMax: Duration = .seconds(10)
    /// Ids in one POST /descendants or /provenance request.
    public var treeBatchIDsMax = 1_000
    /// Bearer tokens; empty means no authentication, which only a loopback address allows.
    public var access = AccessControl()
    /// Bytes of one `POST /v1/events` body.
    public var bodyBytesMax = 64 << 20
    /// Ids one filtered log read may examine before it answers with a `next` cursor.
    public var scanIDsMax = 100_000
    /// Budget of one `POST /v1/query` that names none.
    public var queryBudget = QueryBudget()
    /// The most a request's `budget` may ask for.
    public var queryBudgetMax = QueryBudget(nodesMax: 10_000_000, timeMax: .seconds(30))
    /// Bytes of one `POST /v1/query` page; a page ends early (with a cursor) once it holds this
    /// many, after at least one result.
    public var queryPageBytesMax = 16 << 20
    /// Bytes of a request body on the CelestialTree routes.
    public var emitBodyBytesMax = (2 << 20) + (64 << 10)
    /// Open SSE streams; one more is refused with 503.
    public var streamsMax = 1_024
    /// Events one SSE frame batch reads from the log at a time.
    public var streamReadEventsMax = 512
    /// Comment frames keep idle proxies from closing a stream.
    public var streamHeartbeat: Duration = .seconds(15)
    /// Header-read, body-read and idle timeouts of every connection.
    public var connectionTimeouts = ConnectionTimeouts()
    /// Connections open at once; at the limit the one idle the longest is closed for a new one,
    /// and with none idle new connections wait in the listen backlog. Keep it below the
    /// descriptor limit (`DescriptorBudget`), or accepts fail.
    public var connectionsMax = 4_096
    /// Host names requests may name besides the listen address (and the loopback names on a
    /// loopback server); `*` allows any (`SiteGuard`).
    public var allowedHosts: [String] = []
    /// Origins (`https://app.example`) whose pages may make cross-origin requests that change
    /// something, with CORS headers; `*` allows any.
    public var corsOrigins: [String] = []

    public init() {}

    /// The valid range of every `banyan serve` setting, in one place: the command checks each
    /// flag against its range at start and names the flag when one is outside it, and
    /// docs/OPERATIONS.md lists the same ranges. Sizes are in bytes, times in the flag's unit.
    public enum Bounds {
        public static let port = 0...65_535
        public static let syncIntervalMs = 1...60_000
        public static let treeNodesMax = 1...10_000_000
        public static let batchEventsMax = 1...100_000
        public static let payloadBytesMax = 1...(64 << 20)
        public static let writerQueueEventsMax = 1...10_000_000
        public static let streamsMax = 1...65_536
        public static let bodyBytesMax = 1_024...(1 << 30)
        public static let streamHeartbeatSeconds = 1...3_600
        public static let queryNodes = 1...100_000_000
        public static let queryTimeMs = 1...600_000
        public static let queryPageBytesMax = (64 << 10)...(256 << 20)
        public static let headerReadTimeoutSeconds = 1...3_600
        public static let bodyReadTimeoutSeconds = 1...86_400
        public static let idleTimeoutSeconds = 1...86_400
        /// The upper end is the descriptor budget of the process (`DescriptorBudget`).
        public static let connectionsMin = 1
    }

    /// Whether `host` names a loopback interface (the only kind allowed without tokens).
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// Build identity for /version; commit and build come from the environment at start-up
/// (`BANYAN_COMMIT`, `BANYAN_BUILD`), read once.
public enum BanyanVersion {
    public static let version = "0.1.0"
    public static let commit = ProcessInfo.processInfo.environment["BANYAN_COMMIT"] ?? "unknown"
    public static let build = ProcessInfo.processInfo.environment["BANYAN_BUILD"] ?? "dev"
}
