import EventLog
import Hummingbird
import Logging
import ServiceLifecycle

/// The HTTP server over one `EventStore`: the CelestialTree-compatible routes today, the native
/// `/v1` API next. Runs until SIGINT/SIGTERM, then drains in-flight requests and ends streams;
/// the caller closes the store afterwards.
public struct BanyanServer: Sendable {
    public let store: EventStore
    public let config: ServerConfiguration
    public let logger: Logger
    let subscribers = SubscriberCount()

    public init(store: EventStore, config: ServerConfiguration, logger: Logger) {
        self.store = store
        self.config = config
        self.logger = logger
    }

    /// The responder, usable without a socket in tests.
    public var responder: some HTTPResponder<BasicRequestContext> {
        BanyanResponder(celestialTree: CelestialTreeAPI(store: store, config: config, subscribers: subscribers))
    }

    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            responder: responder,
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "Banyan"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until a shutdown signal.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await application(onServerRunning: onServerRunning).runService()
    }
}

/// Dispatches to the route sets and turns errors into JSON responses in one place.
struct BanyanResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let celestialTree: CelestialTreeAPI

    func respond(to request: Request, context: Context) async throws -> Response {
        do {
            if let response = try await celestialTree.route(request) { return response }
            return JSONResponse.pageNotFound()
        } catch let error as APIError {
            return error.makeResponse()
        } catch let error as LogError {
            return APIError.from(error, summary: "request failed").makeResponse()
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, "internal error", detail: "\(error)").makeResponse()
        }
    }
}
