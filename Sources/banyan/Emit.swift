import ArgumentParser
import BanyanClient

extension Banyan {
    struct Emit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append one event through a running server (POST /emit); prints its id.")

        @Option(help: "Server address.") var server = "http://127.0.0.1:7777"
        @Option(name: .customLong("type"), help: "Event type (required).") var eventType: String
        @Option(name: .customLong("parent"), help: "A parent id; repeat for several.") var parents: [UInt64] = []
        @Option(help: "Message text.") var message: String?
        @Option(help: "Payload as JSON text, e.g. '{\"status\":\"ok\"}'.") var payload: String?

        func run() async throws {
            try await Banyan.reportingErrors {
                let client = BanyanHTTPClient(baseURL: server)
                let id = try await client.emit(type: eventType, parents: parents, message: message, payloadJSON: payload)
                Console.out(String(id))
            }
        }
    }
}
