import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Runs one `http` task attempt: the rendered request, its answer captured as the task's output
/// (`status`, `content_type`, `body`: parsed when it is JSON, text otherwise), a status outside
/// `expect` a failure. The answer's body is read up to a bound and cut beyond it, so a huge or
/// endless answer cannot exhaust the engine; the caller bounds the whole exchange, body
/// included, by the task's timeout (`Engine.within`).
struct HTTPTask: Sendable {
    var method: String
    var url: String
    var headers: [HeaderField]
    struct HeaderField: Sendable {
        var name: String
        var value: String
    }
    /// JSON text; sent with `Content-Type: application/json` unless a header says otherwise.
    var body: String?
    var expect: [Int]
    var timeout: Duration
    var bodyBytesMax: Int

    struct Answer {
        var status: Int
        var contentType: String?
        var body: [UInt8]
        var truncated: Bool
    }

    func send() async throws(Engine.TaskFailure) -> Answer {
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), URL(string: url)?.host != nil else {
            throw Engine.TaskFailure(message: "\"\(url.prefix(200))\" is not an http:// or https:// URL")
        }
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        if let body {
            if !request.headers.contains(name: "Content-Type") { request.headers.add(name: "Content-Type", value: "application/json") }
            request.body = .bytes(ByteBuffer(string: body))
        }
        let deadline = NIODeadline.now() + .milliseconds(Engine.milliseconds(timeout))
        do {
            let response = try await Self.client.execute(request, deadline: deadline)
            var bytes: [UInt8] = []
            var truncated = false
            for try await chunk in response.body {
                if bytes.count + chunk.readableBytes > bodyBytesMax {
                    bytes += chunk.readableBytesView.prefix(bodyBytesMax - bytes.count)
                    truncated = true
                    break
                }
                bytes += chunk.readableBytesView
            }
            return Answer(status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"), body: bytes, truncated: truncated)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw Engine.TaskFailure(message: "\(method) \(url.prefix(200)): no answer within \(timeout)")
        } catch {
            throw Engine.TaskFailure(message: "\(method) \(url.prefix(200)): \(error)")
        }
    }

    /// The answer as the task's output, or the failure an unexpected status is.
    /// One client for every http task: redirects followed at most 5 times, no cycles; a
    /// connection that cannot be made fails the attempt at once (the task's `retry` decides what
    /// next), where AsyncHTTPClient would otherwise try again until the deadline.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .follow(max: 5, allowCycles: false), timeout: .init(connect: .seconds(10)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    func output(_ answer: Answer) throws(Engine.TaskFailure) -> WorkflowValue {
        let text = String(decoding: answer.body, as: UTF8.self)
        var body: WorkflowValue = .text(Engine.capped(text, truncated: answer.truncated, keep: .head))
        if !answer.truncated, answer.contentType?.lowercased().contains("json") == true, let parsed = try? JSONText.parse(answer.body, depthMax: 56) {
            body = parsed
        }
        let output = WorkflowValue.object([
            (key: "status", value: .number(String(answer.status))),
            (key: "content_type", value: answer.contentType.map(WorkflowValue.text) ?? .null),
            (key: "body", value: body),
        ])
        guard expect.contains(answer.status) else {
            let expected = expect == Array(200...299) ? "2xx" : expect.map(String.init).joined(separator: ", ")
            throw Engine.TaskFailure(
                message: "\(method) \(url.prefix(200)) answered \(answer.status) (expected \(expected))",
                details: [(key: "status", value: .number(String(answer.status))), (key: "response", value: .text(String(text.prefix(4_096))))])
        }
        return output
    }
}
