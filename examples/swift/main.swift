// A workflow written in Swift with the Workflow library (docs/WORKFLOWS.md, "Workflows in
// Swift"): an order is charged (retried), its customer notified by email and SMS at once, then
// after a durable pause a child workflow ships it and the order is confirmed. Every step is an
// event in Banyan; running the same run id again resumes it where it stopped, never running a
// completed step twice.
//
//   banyan-workflow-example --server http://127.0.0.1:7777 --run order-1 --effects /tmp/effects
//
// Each step appends its name to the --effects file when it runs (what the tests count).
// --fail-charge N makes the first N charge attempts fail; --approval yes makes the order wait for
// the signal `approval` (banyan workflow signal RUN approval --payload '"ana"') before shipping.
import BanyanClient
import Foundation
import Workflow

struct Order: Codable, Sendable {
    var id: String
    var amount: Int
}

struct Receipt: Codable, Sendable {
    var order: String
    var charged: Int
    var notified: [String]
    var label: String
}

struct Options: Sendable {
    var server = "http://127.0.0.1:7777"
    var run = "order-1"
    var effects = "/dev/null"
    var pause = Duration.seconds(2)
    var failCharge = 0
    var approval = false
}

func parse() -> Options {
    var options = Options()
    var args = CommandLine.arguments.dropFirst()
    while let flag = args.popFirst() {
        guard let value = args.popFirst() else { fail("\(flag) needs a value") }
        switch flag {
        case "--server": options.server = value
        case "--run": options.run = value
        case "--effects": options.effects = value
        case "--pause": options.pause = Duration.parse(value) ?? { fail("--pause: not a duration: \(value)") }()
        case "--fail-charge": options.failCharge = Int(value) ?? { fail("--fail-charge: not a number: \(value)") }()
        case "--approval": options.approval = value == "yes"
        default: fail("unknown option \(flag)")
        }
    }
    return options
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("banyan-workflow-example: \(message)\n".utf8))
    exit(2)
}

let options = parse()

/// Appends `name` to the effects file: the side effect the tests count. One `write` with
/// O_APPEND, so steps running at once (email and SMS) never overwrite each other's lines.
@Sendable func effect(_ name: String) throws {
    let fd = open(options.effects, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
    defer { close(fd) }
    let line = Array("\(name)\n".utf8)
    guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else { throw CocoaError(.fileWriteUnknown) }
}

struct ChargeDeclined: Error, CustomStringConvertible {
    var description: String { "the card was declined" }
}

let ship = CodeWorkflow<String, String>("ship") { ctx, order in
    try await ctx.step("label") {
        try effect("label")
        return "label-\(order)"
    }
}

let order = CodeWorkflow<Order, Receipt>("order") { ctx, order in
    let charged = try await ctx.step("charge", retry: RetryPolicy(maxAttempts: 3, initial: .milliseconds(50), multiplier: 2, max: .seconds(1), jitter: false)) {
        try effect("charge")
        let attempts = (try? String(contentsOfFile: options.effects, encoding: .utf8))?.split(separator: "\n").filter { $0 == "charge" }.count ?? 0
        if attempts <= options.failCharge { throw ChargeDeclined() }
        return order.amount
    }
    let notified = try await ctx.parallel([
        (name: "email", body: { @Sendable in
            try effect("email")
            return "email"
        }),
        (name: "sms", body: { @Sendable in
            try effect("sms")
            return "sms"
        }),
    ])
    try await ctx.sleep(for: options.pause)
    if options.approval {
        let approver: String = try await ctx.waitForSignal("approval")
        try effect("approved-by-\(approver)")
    }
    let label = try await ctx.child("ship", ship, order.id)
    _ = try await ctx.step("confirm") {
        try effect("confirm")
        return true
    }
    return Receipt(order: order.id, charged: charged, notified: notified, label: label)
}

let runner = CodeRunner(engine: Engine(client: BanyanHTTPClient(baseURL: options.server, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])))
do {
    do {
        _ = try await runner.start(order, input: Order(id: options.run, amount: 42), run: options.run)
    } catch Engine.EngineError.runExists {
        // Started before with another input: run it as it was started.
    }
    print(options.run)
    let receipt = try await runner.run(order, id: options.run)
    let json = try JSONEncoder().encode(receipt)
    print(String(decoding: json, as: UTF8.self))
} catch {
    fail("\(error)")
}
