import EventLog
import LineageQuery
import Foundation

/// Everything `banyan serve` can be told about the network side, with the defaults a fresh
/// `banyan serve` uses. Bounds on requests (bodies, trees, queries, streams) are `Limits`, read
/// from the store's options.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7777
    /// The gRPC port (`--grpc-port`; CelestialTree's 7778), on `host`; nil: no gRPC listener. The
    /// server itself does not listen on it: `banyan serve` adds a `GRPCEndpoint` (BanyanGRPC).
    public var grpcPort: Int? = 7778
    /// Bearer tokens; empty means no authentication, which only a loopback address allows.
    public var access = AccessControl()
    /// Comment frames keep idle proxies from closing a stream.
    public var streamHeartbeat: Duration = .seconds(15)
    /// Header-read, body-read and idle timeouts of every connection.
    public var connectionTimeouts = ConnectionTimeouts()
    /// Connections open at once; at the limit the one idle the longest is closed for a new one,
    /// and with none idle new connections wait in the listen backlog. Keep it below the
    /// descriptor limit (`DescriptorBudget`), or accepts fail.
    public var connectionsMax = 4_096
    /// Append requests of one connection started before the earliest of them is answered
    /// (HTTP/1.1 pipelining that shares commit groups, `Pipelining`); 1 answers one at a time.
    public var pipelineDepthMax = 64
    /// `POST /emit` served on the connection's event loop instead of through a task
    /// (`FastEmit`); off, every request goes through the responder (`--emit-on-event-loop false`).
    public var emitOnEventLoop = true
    /// CelestialTree's `GET /provenance/{id}` and `GET /descendants/{id}` served from the
    /// connection's event loop (`FastTree`); off, through the responder (`--trees-on-event-loop false`).
    public var treesOnEventLoop = true
    /// Host names requests may name besides the listen address (and the loopback names on a
    /// loopback server); `*` allows any (`SiteGuard`).
    public var allowedHosts: [String] = []
    /// Origins (`https://app.example`) whose pages may make cross-origin requests that change
    /// something, with CORS headers; `*` allows any.
    public var corsOrigins: [String] = []

    // Replication (docs/REPLICATION.md).
    /// The leader's URL on a follower (`--follow`); nil on a leader.
    public var follow: String?
    /// The URL others should use for this node (`--advertise`); nil: the listen address.
    public var advertise: String?
    /// The bearer token this node presents to its leader, and a new leader to its former one
    /// (`BANYAN_LEADER_TOKEN`), when the other side has tokens.
    public var leaderToken: String?
    /// Followers that must hold every write durably before it is acknowledged, unless the
    /// request asks for more (`replicas=N`; `--min-replicas`). Covers `/emit` too.
    public var minReplicas = 0
    /// How long a write waits for its replicas before it is answered 504 (`--replica-timeout-ms`).
    public var replicaTimeout: Duration = .seconds(5)
    /// How long a read with `min_id` waits for this node to apply that id (`--read-wait-ms`).
    public var readWait: Duration = .seconds(2)

    // Maintenance (docs/OPERATIONS.md).
    /// Where snapshots are written and listed (`--snapshot-dir`); nil: `snapshots` in the data directory.
    public var snapshotDir: String?
    /// Snapshots the server keeps; older ones it wrote are removed after each new one (`--snapshot-keep`).
    public var snapshotKeep = 3
    /// Take a snapshot this often (`--snapshot-every`); nil: only when asked.
    public var snapshotEvery: Duration?
    /// Scheduled snapshots prune the store below themselves (`--snapshot-prune`).
    public var snapshotPrune = false
    /// Compact events older than this (`--compact-older-than`), every `compactEvery`
    /// (`--compact-every`); both or neither.
    public var compactOlderThan: Duration?
    public var compactEvery: Duration?

    public init() {}

    /// The snapshot directory for a store in `dataDir`.
    public func snapshotDirectory(dataDir: String) -> String {
        snapshotDir ?? (dataDir.hasSuffix("/") ? dataDir + "snapshots" : dataDir + "/snapshots")
    }

    /// The URL this node tells others to use.
    public func advertisedURL(port: Int) -> String {
        if let advertise { return advertise.hasSuffix("/") ? String(advertise.dropLast()) : advertise }
        let host = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

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
        public static let queryAnswerCacheBytesMax = 0...(16 << 30)
        public static let treeMetaCacheBytesMax = 0...(16 << 30)
        public static let keyFilterBytesMax = 0...(16 << 30)
        public static let pipelineDepthMax = 1...1_024
        public static let headerReadTimeoutSeconds = 1...3_600
        public static let bodyReadTimeoutSeconds = 1...86_400
        public static let idleTimeoutSeconds = 1...86_400
        /// The upper end is the descriptor budget of the process (`DescriptorBudget`).
        public static let connectionsMin = 1
        public static let minReplicas = 0...16
        public static let replicaTimeoutMs = 1...600_000
        public static let readWaitMs = 0...60_000
        public static let snapshotKeep = 1...10_000
        public static let maintenanceEverySeconds = 1...(366 * 86_400)
        /// `--lease-ttl-seconds`: renewed every third of it, so at least 2 s.
        public static let leaseTTLSeconds = 2...300
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
