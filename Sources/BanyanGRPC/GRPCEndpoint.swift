import BanyanServer
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// `banyan serve`'s gRPC listener (`--grpc-port`, default 7778 as CelestialTree's): CelestialTree's
/// `Emit` and the native `banyan.v1.Banyan` service over the HTTP server's store and settings,
/// run as one of its services so it starts and stops with it. Plaintext HTTP/2, like the HTTP
/// API; the same host, tokens and limits. A port it cannot bind stops the server.
public struct GRPCEndpoint: Service {
    let server: BanyanServer
    let port: Int
    let onListening: @Sendable (Int) async -> Void

    public init(server: BanyanServer, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.server = server
        self.port = port
        self.onListening = onListening
    }

    /// Calls open at once on one connection (HTTP/2 streams): each holds a task and its buffers,
    /// so one connection must not hold unboundedly many; 128 covers a client multiplexing its
    /// calls (gRPC clients keep one connection per server) with room, as grpc-go's default 100 does.
    static let streamsPerConnectionMax = 128

    public func run() async throws {
        let config = server.config
        let limits = server.store.limits
        let connections = GRPCConnections(max: config.connectionsMax)
        let transport = HTTP2ServerTransport.Posix(
            address: try Self.address(host: config.host, port: port), transportSecurity: .plaintext,
            config: .defaults { c in
                // The largest message is an Append batch: the HTTP body limit applies to it.
                c.rpc.maxRequestPayloadSize = limits.appendBodyBytesMax
                c.connection.maxIdleTime = config.connectionTimeouts.idle
                // A client that vanished is found by pings as an SSE stream's by its heartbeat,
                // so its stream slot is not held for the library's default of two hours.
                c.connection.keepalive.time = config.streamHeartbeat
                c.connection.keepalive.timeout = .seconds(10)
                // Shutdown waits this long for calls (a stream whose client stopped reading).
                c.connection.maxGraceTime = .seconds(10)
                c.http2.maxConcurrentStreams = GRPCEndpoint.streamsPerConnectionMax
                c.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in connections.accept(channel) }
            })
        let stopping = StopFlag()
        let grpc = GRPCServer(
            transport: transport,
            services: [CelestialTreeService(server: server), NativeService(server: server, stopping: stopping)])
        let logger = server.logger
        let (host, port) = (config.host, self.port)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await grpc.serve() }
                let bound: GRPCNIOTransportCore.SocketAddress
                do {
                    bound = try await transport.listeningAddress
                } catch {
                    // The transport's own words do not say which address (a port in use, say).
                    throw GRPCListenError(description: "cannot listen for gRPC on \(host):\(port) (--grpc-port): \(error)")
                }
                let port = bound.ipv4?.port ?? bound.ipv6?.port ?? port
                logger.info("gRPC listening", metadata: ["port": "\(port)"])
                await onListening(port)
            }
        } onGracefulShutdown: {
            stopping.flag.store(true, ordering: .relaxed)
            grpc.beginGracefulShutdown()
        }
    }

    /// gRPC binds addresses, not names: `localhost` is 127.0.0.1, anything with a colon IPv6.
    static func address(host: String, port: Int) throws -> GRPCNIOTransportCore.SocketAddress {
        if host == "localhost" { return .ipv4(host: "127.0.0.1", port: port) }
        return host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
    }
}

struct GRPCListenError: Error, CustomStringConvertible {
    var description: String
}

/// The connection limit of the HTTP server (`--connections-max`), counted apart for gRPC: a
/// connection past it is closed as it is accepted.
final class GRPCConnections: Sendable {
    let max: Int
    private let open = Atomic(0)

    init(max: Int) { self.max = max }

    func accept(_ channel: any Channel) -> EventLoopFuture<Void> {
        let count = open.wrappingAdd(1, ordering: .relaxed).newValue
        channel.closeFuture.whenComplete { _ in self.open.wrappingSubtract(1, ordering: .relaxed) }
        guard count <= max else { return channel.close() }
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}
