import Foundation
import Testing
import TestSupport
@testable import EventLog

/// The streaming batch decoder against the tree parser it replaced: same requests, same payload
/// bytes, and the errors of the HTTP contract.
struct AppendBatchDecodingTests {
    /// A random JSON value as text with random whitespace, nesting at most `depth`.
    static func value(_ rng: inout SeededRandom, depth: Int) -> String {
        let ws = [" ", "", "\n", "\t", "  "]
        func pad(_ s: String) -> String { ws.randomElement(using: &rng)! + s + ws.randomElement(using: &rng)! }
        switch Int.random(in: 0..<(depth > 0 ? 8 : 5), using: &rng) {
        case 0: return pad(["true", "false", "null"].randomElement(using: &rng)!)
        case 1: return pad(["0", "-1", "18446744073709551615", "1.5e-7", "-0.25E+3", "123456789012345678901234567890"].randomElement(using: &rng)!)
        case 2, 3:
            let pieces = ["a", "é", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\\"", "\\/", "💥", "\\t", "x y", "\\u0041"]
            return pad("\"" + (0..<Int.random(in: 0...4, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined() + "\"")
        case 4: return pad("\"plain\"")
        case 5:
            return pad("[" + (0..<Int.random(in: 0...3, using: &rng)).map { _ in value(&rng, depth: depth - 1) }.joined(separator: ",") + "]")
        default:
            let keys = (0..<Int.random(in: 0...4, using: &rng)).map { "k\($0)\(["", "é", "\\u0062"].randomElement(using: &rng)!)" }
            return pad("{" + keys.map { "\"\($0)\":" + value(&rng, depth: depth - 1) }.joined(separator: ",") + "}")
        }
    }

    /// The decoder it replaced: parse the whole body into a tree, then build each request.
    static func treeDecode(_ body: String) throws -> [AppendRequest] {
        let items = try JSONParser.parse(body).arrayValue ?? []
        return items.map { item in
            AppendRequest(
                type: item["type"]?.stringValue ?? "", parents: item["parents"]?.arrayValue?.compactMap(\.uint64Value) ?? [],
                parentKeys: item["parent_keys"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                key: item["key"]?.stringValue, stream: item["stream"]?.stringValue, message: item["message"]?.stringValue,
                payload: item["payload"].flatMap { $0.isNull ? nil : $0 })
        }
    }

    @Test func randomBatchesDecodeAsTheTreeParserDoes() throws {
        let seed = SeededRandom.seed("AppendBatchDecodingTests")
        var rng = SeededRandom(seed: seed)
        for round in 0..<300 {
            let events = (0..<Int.random(in: 1...6, using: &rng)).map { i -> String in
                var members = ["\"type\": \"t\(i)\""]
                if Bool.random(using: &rng) { members.append("\"parents\": [\(Int.random(in: 0...9, using: &rng)), 1]") }
                if Bool.random(using: &rng) { members.append("\"parent_keys\": [\"k\\u00e9\", \"b\"]") }
                if Bool.random(using: &rng) { members.append("\"key\": \"key-\(i)\"") }
                if Bool.random(using: &rng) { members.append("\"stream\": null") }
                if Bool.random(using: &rng) { members.append("\"message\": \"\"") }
                if Bool.random(using: &rng) { members.append("\"payload\": " + Self.value(&rng, depth: 4)) }
                members.shuffle(using: &rng)
                return "{" + members.joined(separator: ",") + "}"
            }
            let body = " [" + events.joined(separator: " ,\n") + "]\n"
            let expected = try Self.treeDecode(body)
            let decoded = try AppendRequest.decodeBatch(Array(body.utf8), ndjson: false, limits: Limits())
            #expect(decoded == expected, "seed \(seed), round \(round): \(body)")
            // One event per line: the random whitespace inside an event must not break lines.
            let ndjson = events.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n\n") + "\n"
            #expect(try AppendRequest.decodeBatch(Array(ndjson.utf8), ndjson: true, limits: Limits()) == expected, "seed \(seed), round \(round)")
        }
    }

    static func error(_ body: String, ndjson: Bool = false, limits: Limits = Limits()) -> AppendBatchError? {
        do {
            _ = try AppendRequest.decodeBatch(Array(body.utf8), ndjson: ndjson, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    /// Payload keys are copied and compared as raw bytes when unescaped: a key must still clash
    /// with its escaped spelling, past the 16 keys of the linear scan too, at any nesting level,
    /// and a valid payload must come out as the tree parser serialises it.
    @Test func payloadKeysAreCheckedAndCopiedAsTheTreeParserDoes() throws {
        func body(_ payload: [UInt8]) -> [UInt8] { Array(#"[{"type":"t","payload":"#.utf8) + payload + Array("}]".utf8) }
        func decode(_ payload: [UInt8]) throws -> [UInt8]? {
            try AppendRequest.decodeBatch(body(payload), ndjson: false, limits: Limits()).first?.payload
        }
        let many = (0..<20).map { #""k\#($0)":\#($0)"# }
        let valid: [String] = [
            #"{"a":1,"b":{"a":2},"c":[{"a":3,"b":4}]}"#,
            "{" + many.joined(separator: ",") + "}",
            #"{ "\u0061b" : 1 , "é" : "x\ny" , "💥":[] , "":0 }"#,
            #"{"a\"b":1,"a\\b":2,"ab":3}"#,
        ]
        for text in valid {
            let expected = try JSONParser.parse(Array(text.utf8), depthMax: 64).serialized()
            #expect(try decode(Array(text.utf8)) == expected, "\(text)")
        }
        let duplicates: [String] = [
            #"{"a":1,"a":2}"#,
            #"{"b":1,"\u0062":2}"#,
            #"{"\u0062":1,"b":2}"#,
            #"{"é":1,"\u00e9":2}"#,
            "{" + many.joined(separator: ",") + #","k3":0}"#,
            "{" + many.joined(separator: ",") + #","\u006b19":0}"#,
            #"{"k":{"k":1},"l":[{"k":1,"x":2,"k":3}]}"#,
        ]
        for text in duplicates {
            let error = Self.error(String(decoding: body(Array(text.utf8)), as: UTF8.self))
            #expect(error?.kind == .syntax && error?.reason.contains("duplicate key") == true, "\(text): \(String(describing: error))")
        }
        for (bad, reason) in [
            (Array(#"{"a" 1}"#.utf8), "expected ':'"), ([0x7B, 0x22, 0xC3, 0x28, 0x22, 0x3A, 0x31, 0x7D], "invalid UTF-8"),
            ([0x7B, 0x22, 0x61, 0x0A, 0x22, 0x3A, 0x31, 0x7D], "control character"), (Array(#"{"a":1,b:2}"#.utf8), "begin object key"),
        ] {
            let error = #expect(throws: AppendBatchError.self) { try decode(bad) }
            #expect(error?.kind == .syntax && error?.reason.contains(reason) == true, "\(String(describing: error))")
        }
    }

    @Test func errorsNameKindIndexAndField() {
        var e = Self.error(#"[{"type":"a"},{"type":"b","colour":1}]"#)
        #expect(e?.kind == .invalidEvent && e?.index == 1 && e?.field == "colour")
        e = Self.error(#"[{"type":"a"},{"type":5}]"#)
        #expect(e?.kind == .invalidEvent && e?.index == 1 && e?.field == "type" && e?.reason == "type must be a string, not number")
        e = Self.error(#"[{"parents":[1]}]"#)
        #expect(e?.field == "type" && e?.reason == "type is required")
        e = Self.error(#"[{"type":"a","parents":[1,-2]}]"#)
        #expect(e?.field == "parents" && e?.reason == "parents must hold ids, found number")
        e = Self.error(#"[{"type":"a","parent_keys":"x"}]"#)
        #expect(e?.field == "parent_keys")
        e = Self.error(#"[{"type":"a"}, 7]"#)
        #expect(e?.kind == .invalidEvent && e?.field == "events" && e?.index == 1)
        // A syntax error later in the body wins over an earlier field error.
        e = Self.error(#"[{"type":5},{"type":"b",]"#)
        #expect(e?.kind == .syntax)
        e = Self.error(#"[{"type":"a","type":"b"}]"#)
        #expect(e?.kind == .syntax && e?.reason.contains("duplicate key") == true)
        e = Self.error(#""events""#)
        #expect(e?.kind == .shape && e?.reason.contains("not string") == true)
        #expect(Self.error("[]")?.kind == .empty)
        #expect(Self.error(" \n", ndjson: true)?.kind == .empty)
        var small = Limits()
        small.batchEventsMax = 2
        #expect(Self.error(#"[{"type":"a"},{"type":"a"},{"type":"a"}]"#, limits: small)?.kind == .tooLarge)
        small.parentsPerEventMax = 1
        #expect(Self.error(#"[{"type":"a","parents":[1,2]}]"#, limits: small)?.field == "parents")
        e = Self.error("{\"type\":\"a\"}\n{\"type\":\"b\"\n", ndjson: true)
        #expect(e?.kind == .syntax && e?.index == 1 && e?.reason.hasPrefix("line 2:") == true)
        var shallow = Limits()
        shallow.jsonDepthMax = 4
        #expect(Self.error(#"[{"type":"a","payload":{"b":[[1]]}}]"#, limits: shallow)?.kind == .syntax)
        #expect(Self.error(#"[{"type":"a","payload":{"b":[1]}}]"#, limits: shallow) == nil)
        #expect(Self.error(#"{"type":"a","payload":{"b":[[1]]}}"#, limits: shallow) == nil, "a lone event sits one level higher")
    }
}
