import EventLog

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
    /// Bytes of a request body on the CelestialTree routes.
    public var emitBodyBytesMax = (2 << 20) + (64 << 10)
    /// Open SSE streams; one more is refused with 503.
    public var streamsMax = 1_024
    /// Events one SSE frame batch reads from the log at a time.
    public var streamReadEventsMax = 512
    /// Comment frames keep idle proxies from closing a stream.
    public var streamHeartbeat: Duration = .seconds(15)

    public init() {}
}

/// Build identity for /version.
public enum BanyanVersion {
    public static let version = "0.1.0"
    public static var commit: String { Environment.get("BANYAN_COMMIT") ?? "unknown" }
    public static var build: String { Environment.get("BANYAN_BUILD") ?? "dev" }
}

import Foundation

private enum Environment {
    static func get(_ name: String) -> String? { ProcessInfo.processInfo.environment[name] }
}
