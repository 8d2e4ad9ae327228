import Testing
import TestSupport
@testable import EventLog

struct JSONWriterTests {
    private func text(_ build: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        build(&writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    // MARK: - Escaping

    @Test func escapesEveryControlCharacter() throws {
        let short: [UInt8: String] = [0x08: #"\b"#, 0x09: #"\t"#, 0x0A: #"\n"#, 0x0C: #"\f"#, 0x0D: #"\r"#]
        let hex = Array("0123456789abcdef")
        for c in UInt8(0)..<0x20 {
            let expected = short[c] ?? "\\u00\(hex[Int(c >> 4)])\(hex[Int(c & 0xF)])"
            let input = "a" + String(Character(Unicode.Scalar(c))) + "b"
            let output = text { $0.writeString(input) }
            #expect(output == "\"a\(expected)b\"", "control character \(c)")
            #expect(try JSONParser.parse(output) == .string(input))
        }
        let all = String(decoding: (UInt8(0)..<0x20).map { $0 }, as: UTF8.self)
        #expect(text { $0.writeString(all) }
            == #""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#)
    }

    @Test func escapesOnlyWhatJSONRequires() throws {
        #expect(text { $0.writeString(#"say "hi" \ bye"#) } == #""say \"hi\" \\ bye""#)
        #expect(text { $0.writeString("a/b\u{7F}") } == "\"a/b\u{7F}\"")
        let unicode = "René Scharfe, Nguyễn Thái Ngọc Duy, \u{FFFD} 😀 \u{2028}\u{2029} \u{10FFFF}"
        let output = text { $0.writeString(unicode) }
        #expect(output == "\"\(unicode)\"")
        #expect(try JSONParser.parse(output) == .string(unicode))
        #expect(text { $0.writeString("") } == #""""#)
        #expect(text { $0.writeString("\"") } == #""\"""#)
    }

    // MARK: - Scalars and raw pieces

    @Test(arguments: [UInt64(0), 1, 9, 10, 99, 100, 1_000_000, 4_294_967_295, 10_000_000_000_000_000_000, UInt64.max])
    func writeUIntMatchesDescription(_ v: UInt64) {
        #expect(text { $0.writeUInt(v) } == String(v))
    }

    @Test(arguments: [Int64.min, Int64.min + 1, -10, -1, 0, 1, 10, Int64.max])
    func writeIntMatchesDescription(_ v: Int64) throws {
        let output = text { $0.writeInt(v) }
        #expect(output == String(v))
        #expect(try JSONParser.parse(output).int64Value == v)
    }

    @Test func extremesAppendToExistingContent() {
        #expect(text {
            $0.writeRaw("[")
            $0.writeUInt(UInt64.max); $0.writeRaw(",")
            $0.writeInt(Int64.min); $0.writeRaw(",")
            $0.writeBool(true); $0.writeRaw(",")
            $0.writeBool(false); $0.writeRaw(",")
            $0.writeNull()
            $0.writeRaw("]")
        } == "[18446744073709551615,-9223372036854775808,true,false,null]")
    }

    @Test func handBuiltResponseParses() throws {
        var writer = JSONWriter(capacity: 8)
        writer.writeRaw("{\"id\":")
        writer.writeUInt(42)
        writer.writeRaw(",\"name\":")
        writer.writeString("line1\nline2")
        writer.writeRaw(",\"payload\":")
        writer.writeRaw(Array(#"{"pre":[1,2]}"#.utf8))
        writer.writeRaw("}")
        let value = try JSONParser.parse(writer.bytes)
        #expect(value["id"]?.uint64Value == 42)
        #expect(value["name"]?.stringValue == "line1\nline2")
        #expect(value["payload"]?["pre"] == .array([.number("1"), .number("2")]))
    }

    // MARK: - Values

    @Test func writeValueIsCompact() {
        let value = JSONValue.object([
            JSONMember(key: "a", value: .array([])),
            JSONMember(key: "b", value: .object([])),
            JSONMember(key: "c", value: .array([.null, .bool(true), .number("-1.5e3"), .string("s"), .array([.object([])])])),
            JSONMember(key: "k\"ey", value: .object([JSONMember(key: "", value: .null)])),
        ])
        let expected = #"{"a":[],"b":{},"c":[null,true,-1.5e3,"s",[{}]],"k\"ey":{"":null}}"#
        #expect(text { $0.write(value) } == expected)
        #expect(String(decoding: value.serialized(), as: UTF8.self) == expected)
        #expect(text { $0.write(.string("x")) } == #""x""#)
        #expect(text { $0.write(.null) } == "null")
    }

    @Test func deepValueIsWrittenIteratively() throws {
        // Deep enough that a recursive writer would be at risk on a small (e.g. 512 KiB) thread stack,
        // shallow enough that the recursive teardown of the tree itself stays safe.
        let depth = 5_000
        var value = JSONValue.number("1")
        for k in 0..<depth {
            value = k.isMultiple(of: 2) ? .array([value]) : .object([JSONMember(key: "k", value: value)])
        }
        let output = text { $0.write(value) }
        #expect(output.utf8.count == 1 + depth / 2 * 2 + depth / 2 * 6)
        #expect(output.hasPrefix(#"{"k":[{"k":["#))
        #expect(throws: JSONError.self) { try JSONParser.parse(output) }
        #expect(try JSONParser.parse(output, depthMax: depth) == value)
    }

    // MARK: - Property test

    @Test func randomValuesRoundTrip() throws {
        let seed = SeededRandom.seed("JSONWriterTests.randomValuesRoundTrip")
        var rng = SeededRandom(seed: seed)
        for iteration in 0..<2_000 {
            let value = RandomJSON.value(depth: 0, using: &rng)
            let bytes = value.serialized()
            let parsed = try JSONParser.parse(bytes)
            #expect(parsed == value, "seed \(seed), iteration \(iteration): \(String(decoding: bytes, as: UTF8.self))")
            if parsed != value { break }
            #expect(parsed.serialized() == bytes)
        }
    }

    private enum RandomJSON {
        // Weighted toward the characters that stress escaping and multi-byte UTF-8.
        static let scalars: [Unicode.Scalar] = [
            "a", "Z", "0", " ", "~", "\"", "\\", "/", "\u{0}", "\u{1}", "\u{8}", "\u{9}", "\u{A}", "\u{C}", "\u{D}",
            "\u{1F}", "\u{7F}", "\u{80}", "é", "ễ", "中", "\u{2028}", "\u{2029}", "\u{FEFF}", "\u{FFFD}", "\u{FFFF}",
            "😀", "𝄞", "\u{10FFFF}",
        ]

        static func value(depth: Int, using rng: inout SeededRandom) -> JSONValue {
            switch Int.random(in: 0..<(depth >= 6 ? 4 : 7), using: &rng) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &rng))
            case 2: return .number(number(using: &rng))
            case 3: return .string(string(using: &rng))
            case 4, 5:
                return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in value(depth: depth + 1, using: &rng) })
            default:
                var members: [JSONMember] = []
                var seen = Set<String>()
                for _ in 0..<Int.random(in: 0...5, using: &rng) {
                    let key = string(using: &rng)
                    if seen.insert(key).inserted {
                        members.append(JSONMember(key: key, value: value(depth: depth + 1, using: &rng)))
                    }
                }
                return .object(members)
            }
        }

        static func string(using rng: inout SeededRandom) -> String {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                s.append(scalars.randomElement(using: &rng)!)
            }
            return String(s)
        }

        static func number(using rng: inout SeededRandom) -> String {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: return String(UInt64.random(in: 0...UInt64.max, using: &rng))
            case 1: return String(Int64.random(in: Int64.min...Int64.max, using: &rng))
            case 2: return ["0", "-0", "18446744073709551615", "-9223372036854775808"].randomElement(using: &rng)!
            case 3: return "\(Int.random(in: -999...999, using: &rng)).\(UInt.random(in: 0...9999, using: &rng))"
            case 4:
                let exponent = ["e", "E"].randomElement(using: &rng)! + ["", "+", "-"].randomElement(using: &rng)!
                return "\(Int.random(in: -9...9, using: &rng))\(exponent)\(Int.random(in: 0...400, using: &rng))"
            default: return "\(Int.random(in: 0...9, using: &rng)).\(String(repeating: "0", count: Int.random(in: 1...20, using: &rng)))5"
            }
        }
    }
}
