import ArgumentParser
import BanyanServer
import EventLog
import Foundation
import LineageQuery
import Logging

extension Banyan {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the HTTP server on a data directory (created if missing).")

        @OptionGroup var data: DataDirOptions
        @Option(help: "Address to bind.") var host = "127.0.0.1"
        @Option(help: "Port to listen on.") var port = 7777
        @Option(help: "When to fsync: group (every commit group), interval, never.") var fsync: Durability = .group
        @Option(help: "Milliseconds between background syncs under --fsync interval.") var syncIntervalMs = 100
        @Option(help: "Nodes in one descendants/provenance tree response.") var treeNodesMax = 100_000
        @Option(help: "Events in one append batch.") var batchEventsMax = Limits().batchEventsMax
        @Option(help: "Bytes of one event payload.") var payloadBytesMax = Limits().payloadBytesMax
        @Option(help: "Events waiting for the writer before appends get 503.") var writerQueueEventsMax = Limits().writerQueueEventsMax
        @Option(help: "Open SSE streams.") var streamsMax = ServerConfiguration().streamsMax
        @Option(help: "Bytes of one POST /v1/events body.") var bodyBytesMax = ServerConfiguration().bodyBytesMax
        @Option(help: "Seconds of silence before an SSE heartbeat comment.") var streamHeartbeatSeconds = 15
        @Option(help: "Events one /v1/query may visit unless its budget says otherwise.") var queryNodesDefault = ServerConfiguration().queryBudget.nodesMax
        @Option(help: "Milliseconds one /v1/query may run unless its budget says otherwise.") var queryTimeDefaultMs = 5_000
        @Option(help: "The most events a /v1/query budget may ask for.") var queryNodesMax = ServerConfiguration().queryBudgetMax.nodesMax
        @Option(help: "The most milliseconds a /v1/query budget may ask for.") var queryTimeMaxMs = 30_000
        @Option(help: "Bytes of one /v1/query page; a page ends early, with a cursor, past it.") var queryPageBytesMax = ServerConfiguration().queryPageBytesMax
        @Option(help: "File of bearer tokens, one \"<token> <role>\" per line (roles: read, write, admin). Also: BANYAN_TOKENS=token:role,...")
        var tokensFile: String?
        @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"
        @Flag(help: "Open a store whose write-ahead log is damaged: keep the events before the damage and mark each id after it lost (a banyan.lost event), instead of refusing to start. docs/OPERATIONS.md, \"A damaged write-ahead log\".")
        var acceptWALLoss = false

        func run() async throws {
            try await Banyan.reportingErrors {
                var logger = Logger(label: "banyan")
                logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
                var config = ServerConfiguration()
                config.host = host
                config.port = port
                config.treeNodesMax = treeNodesMax
                config.streamsMax = streamsMax
                config.bodyBytesMax = bodyBytesMax
                config.streamHeartbeat = .seconds(streamHeartbeatSeconds)
                guard queryNodesDefault >= 1, queryNodesDefault <= queryNodesMax, queryTimeDefaultMs >= 1, queryTimeDefaultMs <= queryTimeMaxMs else {
                    throw ValidationError("query budget defaults must be at least 1 and at most their maximums (--query-nodes-max, --query-time-max-ms)")
                }
                config.queryBudget = QueryBudget(nodesMax: queryNodesDefault, timeMax: .milliseconds(queryTimeDefaultMs))
                config.queryBudgetMax = QueryBudget(nodesMax: queryNodesMax, timeMax: .milliseconds(queryTimeMaxMs))
                config.queryPageBytesMax = queryPageBytesMax
                config.access = try AccessControl.load(file: tokensFile, environment: ProcessInfo.processInfo.environment["BANYAN_TOKENS"])
                if !config.access.isEnabled && !config.isLoopback {
                    throw AccessError(
                        "refusing to listen on \(host) without authentication: configure tokens (--tokens-file or BANYAN_TOKENS) or bind to 127.0.0.1")
                }
                let metrics = ServerMetrics()
                var options = StoreOptions()
                options.durability = fsync
                options.syncInterval = .milliseconds(syncIntervalMs)
                options.limits.batchEventsMax = batchEventsMax
                // A commit group holds at least one whole batch and at most what the queue may hold.
                options.limits.commitGroupEventsMax = max(batchEventsMax, min(options.limits.commitGroupEventsMax, writerQueueEventsMax))
                options.limits.payloadBytesMax = payloadBytesMax
                options.limits.writerQueueEventsMax = max(writerQueueEventsMax, options.limits.commitGroupEventsMax)
                options.limits.treeNodesMax = treeNodesMax
                options.observer = metrics
                options.walDamage = acceptWALLoss ? .accept : .refuse
                config.emitBodyBytesMax = max(config.emitBodyBytesMax, payloadBytesMax + options.limits.messageBytesMax + (64 << 10))
                let store = try await EventStore.open(at: data.dataDir, options: options, logger: logger)
                defer { store.close() }
                let server = try BanyanServer(store: store, config: config, metrics: metrics, logger: logger)
                let auth = config.access.isEnabled ? "\(config.access.tokens.count) tokens" : "no authentication (loopback only)"
                try await server.run { port in
                    Console.error("banyan: listening on http://\(host):\(port) (data dir \(data.dataDir), fsync \(fsync.rawValue), \(auth), last id \(store.lastID))")
                }
                logger.info("server stopped; closing the store")
            }
        }
    }
}

extension Durability: ExpressibleByArgument {}
