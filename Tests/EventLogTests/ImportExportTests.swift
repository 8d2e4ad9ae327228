import Foundation
import Testing
import TestSupport
@testable import EventLog

struct ImportExportTests {
    static func write(_ text: String, _ name: String) throws -> String {
        let path = try TempDir.make(name) + "/in.jsonl"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func exported(_ store: EventStore) throws -> [UInt8] {
        var bytes: [UInt8] = []
        _ = try store.exportJSONL { bytes += $0 }
        return bytes
    }

    @Test func anExportImportsBackIntoTheSameIdsAndBytes() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        try await t.store.append([
            AppendRequest(type: "job", key: "j1", stream: "jobs", message: "start", payload: .object([JSONMember(key: "n", value: .number("18446744073709551615"))])),
            AppendRequest(type: "step", parents: [2, 1], message: "Nguyễn"),
            AppendRequest(type: "done", parentKeys: ["j1"], key: "j1-done", stream: "jobs", payload: .array([.null, .bool(true)])),
        ])
        let first = try Self.exported(t.store)
        let file = try Self.write(String(decoding: first, as: UTF8.self), "roundtrip")
        let u = try await TempStore.make("roundtripTarget", genesis: false)
        defer { u.remove() }
        let summary = try await u.store.importJSONL(path: file)
        #expect(summary.appended == 4)
        #expect(try Self.exported(u.store) == first, "export → import → export must be byte-identical")
        let again = try await u.store.importJSONL(path: file)
        #expect(again.appended == 0 && again.duplicates == 4)
        #expect(try u.store.verify().ok)
    }

    @Test func aPinnedIdThatCannotBeHonouredStopsTheImport() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        try await t.store.append([AppendRequest(type: "x", key: "k5")])
        // Line 1 pins id 3 but its key already names event 2: storing it would shift every later pin.
        let file = try Self.write("""
            {"id":3,"key":"k5","type":"x","parents":[]}
            {"id":4,"type":"after"}
            """, "pinconflict")
        await #expect(throws: LogError.self) { try await t.store.importJSONL(path: file) }
        #expect(t.store.lastID == 2)
    }

    @Test func aBadLineNamesItsNumberAndStopsThere() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        let file = try Self.write("""
            {"key":"a","type":"t"}
            {"key":"b","type":"t","parents":["a"]}
            {"key":"c","type":"t","parents":["missing"]}
            """, "badline")
        do {
            _ = try await t.store.importJSONL(path: file, batchEvents: 1)
            Issue.record("import accepted a missing parent key")
        } catch let error as LogError {
            #expect(error.message.contains("line 3"), "\(error)")
        }
        #expect(t.store.lastID == 3, "the two good lines before it stay")
        #expect(try t.store.event(key: "b")?.parents == [2])
    }
}
