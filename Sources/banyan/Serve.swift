import ArgumentParser
import BanyanServer
import EventLog
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
        @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"

        func run() async throws {
            try await Banyan.reportingErrors {
                var logger = Logger(label: "banyan")
                logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
                var options = StoreOptions()
                options.durability = fsync
                options.syncInterval = .milliseconds(syncIntervalMs)
                options.limits.batchEventsMax = batchEventsMax
                options.limits.payloadBytesMax = payloadBytesMax
                options.limits.writerQueueEventsMax = writerQueueEventsMax
                options.limits.treeNodesMax = treeNodesMax
                var config = ServerConfiguration()
                config.host = host
                config.port = port
                config.treeNodesMax = treeNodesMax
                config.streamsMax = streamsMax
                config.emitBodyBytesMax = max(config.emitBodyBytesMax, payloadBytesMax + options.limits.messageBytesMax + (64 << 10))
                let store = try await EventStore.open(at: data.dataDir, options: options, logger: logger)
                defer { store.close() }
                let server = BanyanServer(store: store, config: config, logger: logger)
                let loopback = host == "127.0.0.1" || host == "localhost" || host == "::1"
                if !loopback {
                    logger.warning("binding to a non-loopback address without authentication; anyone who can reach it can write")
                }
                try await server.run { port in
                    Console.error("banyan: listening on http://\(host):\(port) (data dir \(data.dataDir), fsync \(fsync.rawValue), last id \(store.lastID))")
                }
                logger.info("server stopped; closing the store")
            }
        }
    }
}

extension Durability: ExpressibleByArgument {}
