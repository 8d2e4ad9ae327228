import Testing
@testable import Workflow

/// The event model: keys, types and payloads as the log holds them, and the way back.
struct RunEventsTests {
    static let id = RunEvents.RunID(run: "r1", workflow: "w", version: "v")

    @Test func eventsAreWrittenAsDocumented() {
        let started = RunEvents.task(Self.id, "build", attempt: 2, .started, causes: ["run/r1/task/build/attempt/2/retrying"])
        #expect(started.json.json == #"{"type":"workflow.task.started","key":"run/r1/task/build/attempt/2/started","stream":"job_events:r1","parent_keys":["run/r1/task/build/attempt/2/retrying"],"payload":{"run":"r1","workflow":"w","version":"v","task":"build","attempt":2}}"#)
        let requested = RunEvents.requested(Self.id, definition: "name: w", inputs: ["b": .number("2"), "a": .text("x")])
        #expect(requested.json.json == #"{"type":"workflow.run.requested","key":"run/r1/requested","stream":"job_events:r1","parent_keys":[],"payload":{"run":"r1","workflow":"w","version":"v","definition":"name: w","inputs":{"a":"x","b":2}}}"#)
        #expect(RunEvents.finished(Self.id, "completed", causes: []).key == "run/r1/completed")
        #expect(RunEvents.version(of: "name: w") == "18f9cfc067ffc2f1", "FNV-1a 64 of the text, as docs/WORKFLOWS.md says")
        #expect(RunEvents.version(of: "name: w") != RunEvents.version(of: "name: x"))
    }

    @Test func pagesReadBackIntoTransitions() throws {
        let page = #"""
            {"events":[
              {"id":7,"time_unix_nano":1,"type":"workflow.task.completed","parents":[6],"key":"run/r1/task/a/attempt/1/completed","stream":"job_events:r1",
               "payload":{"run":"r1","task":"a","attempt":1,"output":{"n":12345678901234567890,"t":"{{ not a template }}","f":1.50}}},
              {"id":8,"time_unix_nano":2,"type":"workflow.task.failed","parents":[7],"payload":{"task":"b","error":"exit code 1"}},
              {"id":9,"time_unix_nano":3,"type":"workflow.run.completed","parents":[8],"payload":{"run":"r1"}}
            ],"next":9,"last_id":12}
            """#
        let read = try RunEvents.page(Array(page.utf8))
        #expect(read.events.map(\.id) == [7, 8, 9] && read.next == 9 && read.last == 12)
        let output = WorkflowValue.object([
            (key: "n", value: .number("12345678901234567890")), (key: "t", value: .text("{{ not a template }}")), (key: "f", value: .number("1.50")),
        ])
        #expect(RunEvents.transition(read.events[0]) == .completed("a", output: output), "numbers exactly as written; payload text is never a template")
        #expect(RunEvents.transition(read.events[1]) == .failed("b", error: "exit code 1"))
        #expect(RunEvents.transition(read.events[2]) == nil)
        #expect(throws: JSONText.Error.self) { try JSONText.parse(Array(#"{"a": &x 1}"#.utf8)) }
        // What YAML would refuse or misread is plain JSON text here.
        let odd = try JSONText.parse(Array("{\"e\":\"[&](int x) \u{7F}\u{85} a, &b\",\"k\":\"\\u00e9\\ud83d\\ude00\"}".utf8))
        #expect(odd == .object([(key: "e", value: .text("[&](int x) \u{7F}\u{85} a, &b")), (key: "k", value: .text("é😀"))]))
        for bad in ["{\"a\":1,}", "[1 2]", "\"\u{1}\"", "01", "{\"a\"}", "\"\\ud800\"", "[" + String(repeating: "[", count: 70) + String(repeating: "]", count: 71)] {
            #expect(throws: JSONText.Error.self, "\(bad)") { try JSONText.parse(Array(bad.utf8)) }
        }
    }
}
