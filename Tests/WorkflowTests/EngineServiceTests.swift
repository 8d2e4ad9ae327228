import Testing
@testable import Workflow

/// The pure parts of the engine process and of the new task kinds.
struct EngineServiceTests {
    @Test func theQueueHoldsEachRunOnceInRequestOrder() {
        var queue = EngineService.RunQueue()
        for run in ["a", "b", "a", "c"] { queue.add(run) }
        #expect(queue.count == 3)
        #expect(queue.next() == "a")
        queue.add("a")  // being driven: not queued again
        #expect(queue.next() == "b" && queue.next() == "c" && queue.next() == nil)
        queue.finished("a")
        queue.retry("a")
        #expect(queue.next() == "a", "a run whose drive failed is queued again")
        for i in 0..<10_000 { queue.add("r\(i)") }
        for i in 0..<10_000 { #expect(queue.next() == "r\(i)") }
        #expect(queue.count == 0)
    }

    @Test func aSignalIsKeyedByRunAndName() {
        let id = RunEvents.RunID(run: "r1", workflow: "w", version: "v")
        let signal = RunEvents.signal(id, "approval", payload: .object([(key: "by", value: .text("ana"))]))
        #expect(signal.json.json == #"{"type":"workflow.run.signaled","key":"run/r1/signal/approval","stream":"job_events:r1","parent_keys":["run/r1/requested"],"payload":{"run":"r1","workflow":"w","version":"v","signal":"approval","payload":{"by":"ana"}}}"#)
    }

    @Test func anHTTPAnswerBecomesTheOutputOrAFailure() throws {
        let task = HTTPTask(method: "POST", url: "http://127.0.0.1:9/x", headers: [], body: nil, expect: Array(200...299), timeout: .seconds(1), bodyBytesMax: 16)
        let json = HTTPTask.Answer(status: 201, contentType: "application/json; charset=utf-8", body: Array(#"{"n":1.50}"#.utf8), truncated: false)
        #expect(try task.output(json) == .object([(key: "status", value: .number("201")), (key: "content_type", value: .text("application/json; charset=utf-8")), (key: "body", value: .object([(key: "n", value: .number("1.50"))]))]))
        let notJSON = HTTPTask.Answer(status: 200, contentType: "application/json", body: Array("{oops".utf8), truncated: false)
        #expect(try task.output(notJSON)["body"] == .text("{oops"), "a body that does not parse is kept as text")
        let cut = HTTPTask.Answer(status: 200, contentType: "application/json", body: Array("[1,2,3,4,5,6,7,8".utf8), truncated: true)
        #expect(try task.output(cut)["body"] == .text("[output truncated] [1,2,3,4,5,6,7,8"))
        let bad = HTTPTask.Answer(status: 500, contentType: "text/plain", body: Array("down".utf8), truncated: false)
        #expect(throws: Engine.TaskFailure.self) { try task.output(bad) }
        do {
            _ = try task.output(bad)
        } catch {
            #expect(error.message == "POST http://127.0.0.1:9/x answered 500 (expected 2xx)")
        }
        var teapot = task
        teapot.expect = [418]
        #expect(try teapot.output(HTTPTask.Answer(status: 418, contentType: nil, body: [], truncated: false))["status"] == .number("418"))
    }

    @Test func permitsBoundTheWorkRunningAtOnce() async throws {
        let permits = Permits(3)
        let peak = Peak()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    try await permits.holding {
                        await peak.enter()
                        try await Task.sleep(for: .milliseconds(2))
                        await peak.leave()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await peak.max == 3, "never more than 3 at once, and 20 tasks reach 3")
    }

    actor Peak {
        var now = 0
        var max = 0
        func enter() {
            now += 1
            max = Swift.max(max, now)
        }
        func leave() { now -= 1 }
    }
}
