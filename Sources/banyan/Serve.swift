import ArgumentParser
import BanyanClient
import BanyanGRPC
import BanyanServer
import EventLog
import Foundation
import LineageQuery
import Logging
import Synchronization
import Workflow
import WorkflowServer

extension Banyan {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the HTTP server on a data directory (created if missing).",
            discussion: "Every flag has a valid range (docs/OPERATIONS.md); a value outside it stops the start with an error naming the flag.")

        typealias Bounds = ServerConfiguration.Bounds

        @OptionGroup var data: DataDirOptions
        @Option(help: "Address to bind.") var host = "127.0.0.1"
        @Option(help: "Port to listen on (0: any free port).") var port = 7777
        @Option(help: "gRPC port: CelestialTree's Emit and the banyan.v1 service (docs/CLIENTS.md); 0: any free port; off: no gRPC.")
        var grpcPort = ServerConfiguration().grpcPort.map(String.init) ?? "off"
        @Option(help: "When to fsync: group (every commit group), interval, never.") var fsync: Durability = .group
        @Option(help: "Milliseconds between background syncs under --fsync interval.") var syncIntervalMs = 100
        @Option(help: "Nodes in one descendants/provenance tree response.") var treeNodesMax = Limits().treeNodesMax
        @Option(help: "Events in one append batch.") var batchEventsMax = Limits().batchEventsMax
        @Option(help: "Bytes of one event payload.") var payloadBytesMax = Limits().payloadBytesMax
        @Option(help: "Events waiting for the writer before appends get 503.") var writerQueueEventsMax = Limits().writerQueueEventsMax
        @Option(help: "Open SSE streams.") var streamsMax = Limits().streamsMax
        @Option(help: "Bytes of one POST /v1/events body.") var bodyBytesMax = Limits().appendBodyBytesMax
        @Option(help: "Seconds of silence before an SSE heartbeat comment.") var streamHeartbeatSeconds = 15
        @Option(help: "Events one /v1/query may visit unless its budget says otherwise.") var queryNodesDefault = Limits().queryNodesDefault
        @Option(help: "Milliseconds one /v1/query may run unless its budget says otherwise.") var queryTimeDefaultMs = 5_000
        @Option(help: "The most events a /v1/query budget may ask for.") var queryNodesMax = Limits().queryNodesMax
        @Option(help: "The most milliseconds a /v1/query budget may ask for.") var queryTimeMaxMs = 30_000
        @Option(help: "Bytes of one /v1/query page; a page ends early, with a cursor, past it.") var queryPageBytesMax = Limits().queryPageBytesMax
        @Option(help: "Append requests (POST /emit, /v1/events) of one connection started before the earliest is answered, so pipelined appends share fsyncs; 1 answers one at a time.") var pipelineDepthMax = ServerConfiguration().pipelineDepthMax
        @Option(help: "Serve POST /emit on the connection's event loop, without a task per request (false: through the same path as every other route).") var emitOnEventLoop = ServerConfiguration().emitOnEventLoop
        @Option(help: "Serve GET /provenance/{id} and /descendants/{id} from the connection's event loop, without a task per request (false: through the same path as every other route).") var treesOnEventLoop = ServerConfiguration().treesOnEventLoop
        @Option(help: "Bytes of /v1/query answers kept between pages so later pages do not run the query again (0: none).") var queryAnswerCacheBytesMax = Limits().queryAnswerCacheBytesMax
        @Option(help: "Bytes of ?view=meta tree members kept so trees that meet the same events again copy them instead of reading them (0: none).") var treeMetaCacheBytesMax = Limits().treeMetaCacheBytesMax
        @Option(help: "Bytes of the writer's in-memory filter of idempotency keys, which spares a storage lookup per new key (0: none; else at least 1 MiB).") var keyFilterBytesMax = Limits().keyFilterBytesMax
        @Option(help: "Seconds from the first byte of a request to the end of its headers.") var headerReadTimeoutSeconds = 10
        @Option(help: "Seconds from the end of a request's headers to the end of its body.") var bodyReadTimeoutSeconds = 60
        @Option(help: "Seconds a kept-alive connection may stay silent between requests.") var idleTimeoutSeconds = 60
        @Option(help: "Connections open at once (default: 4096, or what the descriptor limit allows). At the limit the connection idle the longest is closed for a new one.")
        var connectionsMax: Int?
        @Option(help: "Host names requests may name besides the listen address (and localhost on loopback); comma-separated or repeated; * allows any. A request for another name gets 403 (DNS rebinding).")
        var allowedHosts: [String] = []
        @Option(help: "Origins whose web pages may send requests that change something (POST), with CORS headers, e.g. https://app.example; comma-separated or repeated; * allows any.")
        var corsOrigins: [String] = []
        @Option(help: "File of bearer tokens, one \"<token> <role>\" per line (roles: read, write, admin). Also: BANYAN_TOKENS=token:role,...")
        var tokensFile: String?
        @Option(help: "Run as a follower of the leader at this URL: pull and apply its log, serve reads, redirect writes to it (docs/REPLICATION.md). Uses BANYAN_LEADER_TOKEN when the leader has tokens.")
        var follow: String?
        @Option(help: "The URL others should use for this node (default: http://<host>:<port>).") var advertise: String?
        @Option(help: "Followers that must hold every write durably before it is acknowledged (a floor under replicas=N; covers /emit).")
        var minReplicas = 0
        @Option(help: "Milliseconds a write waits for its replicas before it is answered 504.") var replicaTimeoutMs = 5_000
        @Option(help: "Milliseconds a read with min_id waits for this node to apply that id before it is answered 503.") var readWaitMs = 2_000
        @Option(help: "Directory of snapshots (default: snapshots in the data directory).") var snapshotDir: String?
        @Option(help: "Snapshots to keep: after each new one the server removes its oldest beyond this many.") var snapshotKeep = 3
        @Option(help: "Take a snapshot this often, e.g. 6h, 1d, 90m (default: only when asked, POST /v1/admin/snapshots).") var snapshotEvery: String?
        @Flag(help: "Scheduled snapshots also prune the store below themselves once verified (docs/OPERATIONS.md, Pruning).") var snapshotPrune = false
        @Option(help: "Compact events older than this (drop their payloads and messages, keep their lineage), e.g. 30d; with --compact-every.") var compactOlderThan: String?
        @Option(help: "How often to run --compact-older-than, e.g. 1d.") var compactEvery: String?
        @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
        @Flag(help: "Open a store whose write-ahead log is damaged: keep the events before the damage and mark each id after it lost (a banyan.lost event), instead of refusing to start. docs/OPERATIONS.md, \"A damaged write-ahead log\".")
        var acceptWALLoss = false
        @Flag(help: "Also run a workflow engine in this process (as banyan workflow engine does, through the HTTP API on this port; uses BANYAN_TOKEN when the server has tokens). docs/WORKFLOWS.md.")
        var workflows = false
        @Option(help: "With --workflows: task attempts doing work at once across all runs.") var workflowsMaxConcurrentTasks = Engine.tasksMaxDefault
        @Option(help: "Join the cluster of this name in etcd: this node's membership, bound to an etcd lease (docs/REPLICATION.md, \"Cluster mode\"). With --etcd.")
        var cluster: String?
        @Option(help: "etcd endpoints for --cluster, comma-separated, e.g. http://127.0.0.1:2379.") var etcd: String?
        @Option(help: "With --cluster: seconds this node's etcd lease outlives its last renewal (renewed every third of it).") var leaseTtlSeconds = 5

        /// Each flag against its range (`ServerConfiguration.Bounds`), naming the flag on failure.
        func validate() throws {
            func check(_ flag: String, _ value: Int, _ range: ClosedRange<Int>, _ unit: String = "") throws {
                guard range.contains(value) else {
                    throw ValidationError("--\(flag) must be \(range.lowerBound)...\(range.upperBound)\(unit), not \(value)")
                }
            }
            guard !host.isEmpty else { throw ValidationError("--host must not be empty") }
            try check("workflows-max-concurrent-tasks", workflowsMaxConcurrentTasks, 1...4_096)
            if workflows, follow != nil { throw ValidationError("--workflows runs on the leader: a follower takes no writes") }
            for name in Self.list(allowedHosts) where name != "*" {
                guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else {
                    throw ValidationError("--allowed-hosts takes host names (printable ASCII, no spaces or slashes), not \"\(name)\"")
                }
            }
            for origin in Self.list(corsOrigins) where origin != "*" {
                guard origin.hasPrefix("http://") || origin.hasPrefix("https://"), !origin.dropFirst(8).contains("/") || origin.hasSuffix("/") else {
                    throw ValidationError("--cors-origins takes origins like https://app.example or http://localhost:3000, not \"\(origin)\"")
                }
            }
            try check("port", port, Bounds.port)
            if grpcPort != "off" {
                guard let n = grpcPortNumber, Bounds.port.contains(n) else {
                    throw ValidationError("--grpc-port must be \(Bounds.port.lowerBound)...\(Bounds.port.upperBound) or off, not \"\(grpcPort)\"")
                }
                if n != 0, n == port { throw ValidationError("--grpc-port must differ from --port (\(port))") }
            }
            try check("sync-interval-ms", syncIntervalMs, Bounds.syncIntervalMs)
            try check("tree-nodes-max", treeNodesMax, Bounds.treeNodesMax)
            try check("batch-events-max", batchEventsMax, Bounds.batchEventsMax)
            try check("payload-bytes-max", payloadBytesMax, Bounds.payloadBytesMax, " bytes")
            try check("writer-queue-events-max", writerQueueEventsMax, Bounds.writerQueueEventsMax)
            try check("streams-max", streamsMax, Bounds.streamsMax)
            try check("body-bytes-max", bodyBytesMax, Bounds.bodyBytesMax, " bytes")
            try check("stream-heartbeat-seconds", streamHeartbeatSeconds, Bounds.streamHeartbeatSeconds)
            try check("query-nodes-max", queryNodesMax, Bounds.queryNodes)
            try check("query-nodes-default", queryNodesDefault, Bounds.queryNodes.lowerBound...queryNodesMax)
            try check("query-time-max-ms", queryTimeMaxMs, Bounds.queryTimeMs)
            try check("query-time-default-ms", queryTimeDefaultMs, Bounds.queryTimeMs.lowerBound...queryTimeMaxMs)
            try check("query-page-bytes-max", queryPageBytesMax, Bounds.queryPageBytesMax, " bytes")
            try check("query-answer-cache-bytes-max", queryAnswerCacheBytesMax, Bounds.queryAnswerCacheBytesMax, " bytes")
            try check("tree-meta-cache-bytes-max", treeMetaCacheBytesMax, Bounds.treeMetaCacheBytesMax, " bytes")
            try check("key-filter-bytes-max", keyFilterBytesMax, Bounds.keyFilterBytesMax, " bytes")
            if keyFilterBytesMax != 0 && keyFilterBytesMax < Limits.keyFilterBytesMin {
                throw ValidationError("--key-filter-bytes-max must be 0 (no key filter) or at least 1 MiB (\(Limits.keyFilterBytesMin)), not \(keyFilterBytesMax)")
            }
            try check("pipeline-depth-max", pipelineDepthMax, Bounds.pipelineDepthMax)
            try check("header-read-timeout-seconds", headerReadTimeoutSeconds, Bounds.headerReadTimeoutSeconds)
            try check("body-read-timeout-seconds", bodyReadTimeoutSeconds, Bounds.bodyReadTimeoutSeconds)
            try check("idle-timeout-seconds", idleTimeoutSeconds, Bounds.idleTimeoutSeconds)
            try check("min-replicas", minReplicas, Bounds.minReplicas)
            try check("replica-timeout-ms", replicaTimeoutMs, Bounds.replicaTimeoutMs)
            try check("read-wait-ms", readWaitMs, Bounds.readWaitMs)
            try check("snapshot-keep", snapshotKeep, Bounds.snapshotKeep)
            try check("lease-ttl-seconds", leaseTtlSeconds, Bounds.leaseTTLSeconds)
            guard (cluster == nil) == (etcd == nil) else { throw ValidationError("--cluster and --etcd go together: which cluster, and the etcd that holds it") }
            if let cluster {
                try ClusterOptions.check(cluster: cluster, etcd: etcd ?? "")
                if port == 0, advertise == nil { throw ValidationError("--cluster needs the node's URL: give --advertise, or a --port other than 0") }
                if follow != nil { throw ValidationError("--cluster and --follow do not go together: in a cluster, the election in etcd says whom to follow") }
                if workflows { throw ValidationError("--workflows is not supported with --cluster yet: the engine would have to move with the leadership") }
            }
            func duration(_ flag: String, _ text: String?) throws {
                guard let text else { return }
                guard let value = Duration.parse(text), Bounds.maintenanceEverySeconds.contains(Int(value.inSeconds)) else {
                    throw ValidationError("--\(flag) takes a duration of 1s to 366d like 6h, 90m or 30d, not \"\(text)\"")
                }
            }
            try duration("compact-older-than", compactOlderThan)
            try duration("compact-every", compactEvery)
            guard (compactOlderThan == nil) == (compactEvery == nil) else {
                throw ValidationError("--compact-older-than and --compact-every go together: what to compact, and how often")
            }
            if snapshotPrune, snapshotEvery == nil {
                throw ValidationError("--snapshot-prune prunes below scheduled snapshots: give --snapshot-every too")
            }
            if let snapshotEvery {
                guard let every = Duration.parse(snapshotEvery), Bounds.maintenanceEverySeconds.contains(Int(every.inSeconds)) else {
                    throw ValidationError("--snapshot-every takes a duration of 1s to 366d like 6h, 90m or 1d, not \"\(snapshotEvery)\"")
                }
            }
            for (flag, value) in [("follow", follow), ("advertise", advertise)] {
                guard let value else { continue }
                guard let url = URL(string: value), ["http", "https"].contains(url.scheme ?? ""), url.host != nil, url.path.isEmpty || url.path == "/",
                    url.query == nil
                else {
                    throw ValidationError("--\(flag) takes a base URL like http://10.0.0.5:7777, not \"\(value)\"")
                }
            }
            if follow != nil, minReplicas > 0 {
                throw ValidationError("--min-replicas applies to a leader; a follower (--follow) takes no writes")
            }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical, not \"\(logLevel)\"")
            }
        }

        /// `--grpc-port` as a number; nil for `off` (anything else `validate` refused).
        var grpcPortNumber: Int? { Int(grpcPort) }

        /// Values of a repeatable, comma-separated option.
        static func list(_ values: [String]) -> [String] {
            values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }

        func run() async throws {
            try await Banyan.reportingErrors {
                var logger = Logger(label: "banyan")
                logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
                var options = StoreOptions()
                var config = ServerConfiguration()
                // Descriptors: RocksDB's table files, connections, and a reserve for the rest.
                let budget = DescriptorBudget.current(storeFilesMax: options.storeFilesMax)
                options.storeFilesMax = budget.storeFiles
                let connectionsCeiling = budget.connectionsCeiling
                guard connectionsCeiling >= ServerConfiguration.Bounds.connectionsMin else {
                    throw ValidationError("the descriptor limit (\(budget.descriptors), ulimit -n) leaves no room for connections; raise it")
                }
                if let connectionsMax {
                    guard (ServerConfiguration.Bounds.connectionsMin...connectionsCeiling).contains(connectionsMax) else {
                        throw ValidationError(
                            "--connections-max must be 1...\(connectionsCeiling) (the descriptor limit \(budget.descriptors) less \(budget.storeFiles) for the store and \(ConnectionRegistry.descriptorReserve) in reserve), not \(connectionsMax)")
                    }
                    config.connectionsMax = connectionsMax
                } else {
                    config.connectionsMax = min(config.connectionsMax, connectionsCeiling)
                }
                config.host = host
                config.port = port
                config.grpcPort = grpcPortNumber
                config.allowedHosts = Self.list(allowedHosts)
                config.corsOrigins = Self.list(corsOrigins)
                config.streamHeartbeat = .seconds(streamHeartbeatSeconds)
                options.limits.streamsMax = streamsMax
                options.limits.appendBodyBytesMax = bodyBytesMax
                options.limits.queryNodesDefault = queryNodesDefault
                options.limits.queryNodesMax = queryNodesMax
                options.limits.queryTimeDefault = .milliseconds(queryTimeDefaultMs)
                options.limits.queryTimeMax = .milliseconds(queryTimeMaxMs)
                options.limits.queryPageBytesMax = queryPageBytesMax
                options.limits.queryAnswerCacheBytesMax = queryAnswerCacheBytesMax
                options.limits.keyFilterBytesMax = keyFilterBytesMax
                options.limits.treeMetaCacheBytesMax = treeMetaCacheBytesMax
                config.pipelineDepthMax = pipelineDepthMax
                config.emitOnEventLoop = emitOnEventLoop
                config.treesOnEventLoop = treesOnEventLoop
                config.connectionTimeouts = ConnectionTimeouts(
                    headerRead: .seconds(headerReadTimeoutSeconds), bodyRead: .seconds(bodyReadTimeoutSeconds), idle: .seconds(idleTimeoutSeconds))
                config.follow = follow.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
                config.advertise = advertise
                config.leaderToken = ProcessInfo.processInfo.environment["BANYAN_LEADER_TOKEN"]
                config.minReplicas = minReplicas
                config.replicaTimeout = .milliseconds(replicaTimeoutMs)
                config.readWait = .milliseconds(readWaitMs)
                config.snapshotDir = snapshotDir
                config.snapshotKeep = snapshotKeep
                config.snapshotEvery = snapshotEvery.flatMap(Duration.parse)
                config.snapshotPrune = snapshotPrune
                config.compactOlderThan = compactOlderThan.flatMap(Duration.parse)
                config.compactEvery = compactEvery.flatMap(Duration.parse)
                // In a cluster every node starts as a follower; the election makes one the leader.
                options.role = follow == nil && cluster == nil ? .leader : .follower
                config.access = try AccessControl.load(file: tokensFile, environment: ProcessInfo.processInfo.environment["BANYAN_TOKENS"])
                if !config.access.isEnabled && !config.isLoopback {
                    throw AccessError(
                        "refusing to listen on \(host) without authentication: configure tokens (--tokens-file or BANYAN_TOKENS) or bind to 127.0.0.1")
                }
                let metrics = ServerMetrics()
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
                if let leader = config.follow {
                    if let restored = try await FollowerBootstrap.prepare(dataDir: data.dataDir, leader: leader, token: config.leaderToken, logger: logger) {
                        Console.error("banyan: bootstrapped from the leader's snapshot: events up to \(restored.manifest.snapshotID)")
                    }
                }
                let store = try await EventStore.open(at: data.dataDir, options: options, logger: logger)
                defer { store.close() }
                var server = try BanyanServer(store: store, config: config, metrics: metrics, logger: logger)
                if let cluster, let etcd {
                    let member = ClusterMember(
                        // A call that hangs must not hold the loop past the point where a leader steps down.
                        etcd: EtcdClient(endpoints: try EtcdClient.endpoints(etcd), timeout: .milliseconds(max(250, leaseTtlSeconds * 1_000 / 6))),
                        cluster: cluster, url: config.advertisedURL(port: port),
                        ttlSeconds: leaseTtlSeconds, store: store, replication: server.replication, token: config.leaderToken, logger: logger)
                    // Before serving: etcd out of reach, or the URL held by a live node, stops the start.
                    try await member.join()
                    server.cluster = member
                }
                if let grpcPort = config.grpcPort {
                    server.services.append(GRPCEndpoint(server: server, port: grpcPort) { port in
                        Console.error("banyan: gRPC on \(host):\(port) (celestialtree.v1.CelestialTreeService/Emit, banyan.v1.Banyan)")
                    })
                }
                let upstream = WorkflowAPI.Upstream()
                let engineMetrics = EngineMetrics()
                let views = WorkflowViews()
                if workflows {
                    let api = WorkflowAPI(upstream: upstream, engineMetrics: engineMetrics, views: views)
                    server.routes = api.routes
                    server.moreMetrics = { try await api.metrics($0) }
                }
                let auth = config.access.isEnabled ? "\(config.access.tokens.count) tokens" : "no authentication (loopback only)"
                let connections = config.connectionsMax
                defer { ServerMark.remove(dataDir: data.dataDir) }
                let token = ProcessInfo.processInfo.environment["BANYAN_TOKEN"]
                if workflows, config.access.isEnabled, token == nil {
                    throw ValidationError("--workflows on a server with tokens needs BANYAN_TOKEN (a token with the write role) for its engine")
                }
                let engineTask = Mutex<Task<Void, Never>?>(nil)
                let engineLogger = logger
                defer { engineTask.withLock { $0?.cancel() } }
                try await server.run { port in
                    if workflows {
                        // Through the HTTP API like any engine (the engine is a client of the log).
                        let address = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host.contains(":") ? "[\(host)]" : host
                        upstream.set("http://\(address):\(port)")
                        var engine = Engine(
                            client: BanyanHTTPClient(baseURL: "http://\(address):\(port)", token: token), tasksMax: workflowsMaxConcurrentTasks,
                            // One server per data directory (RocksDB's lock): a name that is its own,
                            // so a restarted server takes over its engine's attempts at once.
                            engineID: "serve-" + RunEvents.version(of: URL(fileURLWithPath: data.dataDir).standardizedFileURL.path),
                            log: { engineLogger.info("workflow: \($0)") })
                        engine.functions = Engine.builtinFunctions
                        engine.metrics = engineMetrics
                        let service = { var s = EngineService(engine: engine); s.views = views; return s }()
                        engineTask.withLock {
                            $0 = Task {
                                do { try await service.run() } catch is CancellationError {} catch { engineLogger.error("workflow engine stopped: \(error)") }
                            }
                        }
                    }
                    ServerMark.write(dataDir: data.dataDir, host: host, port: port)
                    let role = follow.map { "follower of \($0)" } ?? "leader"
                    Console.error("banyan: listening on http://\(host):\(port) (data dir \(data.dataDir), \(role), epoch \(store.epoch), fsync \(fsync.rawValue), \(auth), last id \(store.lastID), at most \(connections) connections)")
                }
                logger.info("server stopped; closing the store")
            }
        }
    }
}

extension Durability: ExpressibleByArgument {}
