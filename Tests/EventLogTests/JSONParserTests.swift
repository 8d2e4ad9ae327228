import Testing
@testable import EventLog

struct JSONParserTests {
    // MARK: - Round trips and preservation

    @Test func variedDocumentRoundTrips() throws {
        let text = """
         { "name" : "René Scharfe", "author": "Nguyễn Thái Ngọc Duy",
           "emoji": "😀 \\ud83d\\ude00", "replacement": "\u{FFFD}",
           "escapes": "q\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0001 \\u00e9",
           "nested": [1, -2.5e-3, [true, false, null, []], {}, {"deep": [[{"x": "y"}]]}],
           "big": 18446744073709551615, "empty": "" }\t\r\n
        """
        let value = try JSONParser.parse(text)
        #expect(value["name"]?.stringValue == "René Scharfe")
        #expect(value["author"]?.stringValue == "Nguyễn Thái Ngọc Duy")
        #expect(value["emoji"]?.stringValue == "😀 😀")
        #expect(value["replacement"]?.stringValue == "\u{FFFD}")
        #expect(value["escapes"]?.stringValue == "q\" b\\ s/ \u{8}\u{C}\n\r\t \u{1} é")
        #expect(value["nested"]?.arrayValue?.count == 5)
        #expect(value["big"]?.uint64Value == UInt64.max)

        let compact = String(decoding: value.serialized(), as: UTF8.self)
        let expected = #"{"name":"René Scharfe","author":"Nguyễn Thái Ngọc Duy","emoji":"😀 😀","replacement":"\#u{FFFD}","escapes":"q\" b\\ s/ \b\f\n\r\t \u0001 é","nested":[1,-2.5e-3,[true,false,null,[]],{},{"deep":[[{"x":"y"}]]}],"big":18446744073709551615,"empty":""}"#
        #expect(compact == expected)
        #expect(try JSONParser.parse(value.serialized()) == value)
        #expect(try JSONParser.parse(compact) == value)
    }

    @Test func memberOrderIsPreserved() throws {
        let value = try JSONParser.parse(#"{"z":1,"a":2,"m":3,"b":{"y":1,"x":2}}"#)
        #expect(value.objectValue?.map(\.key) == ["z", "a", "m", "b"])
        #expect(value["b"]?.objectValue?.map(\.key) == ["y", "x"])
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #"{"z":1,"a":2,"m":3,"b":{"y":1,"x":2}}"#)
    }

    @Test(arguments: ["0", "-0", "18446744073709551615", "-9223372036854775808", "1.5E+10", "1e-7",
                      "0.000", "123456789012345678901234567890", "-1.25e400", "2E0"])
    func numberLiteralsArePreserved(_ literal: String) throws {
        let value = try JSONParser.parse(" [\(literal)] ")
        #expect(value == .array([.number(literal)]))
        #expect(String(decoding: value.serialized(), as: UTF8.self) == "[\(literal)]")
    }

    @Test func integerAccessorEdgeCases() throws {
        func number(_ s: String) throws -> JSONValue { try JSONParser.parse(s) }
        #expect(try number("0").uint64Value == 0)
        #expect(try number("18446744073709551615").uint64Value == UInt64.max)
        #expect(try number("18446744073709551616").uint64Value == nil)
        #expect(try number("1.0").uint64Value == nil)
        #expect(try number("1e3").uint64Value == nil)
        #expect(try number("-1").uint64Value == nil)
        #expect(try number("-0").uint64Value == nil)

        #expect(try number("9223372036854775807").int64Value == Int64.max)
        #expect(try number("9223372036854775808").int64Value == nil)
        #expect(try number("-9223372036854775808").int64Value == Int64.min)
        #expect(try number("-9223372036854775809").int64Value == nil)
        #expect(try number("-0").int64Value == 0)
        #expect(try number("-12").int64Value == -12)
        #expect(try number("1.0").int64Value == nil)
        #expect(try number("1E2").int64Value == nil)

        #expect(try number("1.5e3").doubleValue == 1500)
        #expect(try number("-0.25").doubleValue == -0.25)
        #expect(try number("18446744073709551615").doubleValue == 18446744073709551615.0)
        #expect(JSONValue.string("1").uint64Value == nil)
        #expect(JSONValue.string("1").doubleValue == nil)
    }

    @Test func accessorsAndTypeNames() throws {
        let value = try JSONParser.parse(#"{"s":"x","b":true,"n":null,"a":[1],"o":{"k":1},"d":1.5}"#)
        #expect(value["s"]?.stringValue == "x")
        #expect(value["b"]?.boolValue == true)
        #expect(value["n"]?.isNull == true)
        #expect(value["s"]?.isNull == false)
        #expect(value["a"]?.arrayValue == [.number("1")])
        #expect(value["o"]?.objectValue == [JSONMember(key: "k", value: .number("1"))])
        #expect(value["missing"] == nil)
        #expect(value["s"]?["anything"] == nil)
        #expect(value["s"]?.boolValue == nil)
        #expect(value["b"]?.stringValue == nil)
        let names = ["s", "b", "n", "a", "o", "d"].compactMap { value[$0]?.typeName }
        #expect(names == ["string", "boolean", "null", "array", "object", "number"])
    }

    @Test func bytesAndStringOverloadsAgree() throws {
        let text = #"  {"k": ["v", 1, {"é": null}]}  "#
        #expect(try JSONParser.parse(Array(text.utf8)) == JSONParser.parse(text))
        #expect(try JSONParser.parse("\"x\"") == .string("x"))
        #expect(try JSONParser.parse(" true ") == .bool(true))
        #expect(try JSONParser.parse("null") == .null)
    }

    // MARK: - Strings

    @Test func surrogateEscapes() throws {
        func decode(_ body: String) throws(JSONError) -> String? { try JSONParser.parse("\"\(body)\"").stringValue }
        #expect(try decode(#"\ud834\udd1e"#) == "𝄞")
        #expect(try decode(#"\uD83D\uDE00x"#) == "😀x")
        // Lone surrogates are not Unicode: refused, where Go would decode them to U+FFFD and make
        // "\ud800", "\udfff" and "\ufffd" the same key.
        for (body, offset) in [(#"\ud800"#, 1), (#"\udc00"#, 1), (#"a\ud800b"#, 2), (#"\ud800\u0041"#, 1), (#"\ud800\ud800\udc00"#, 1), (#"\udc00\ud800"#, 1), (#"\uDBFF"#, 1)] {
            #expect(throws: JSONError.self, "\(body)") { try decode(body) }
            do {
                _ = try decode(body)
            } catch {
                #expect(error.offset == offset && error.reason.contains("lone UTF-16 surrogate"), "\(body): \(error)")
            }
        }
        #expect(try decode(#"\ufffd"#) == "\u{FFFD}")
        #expect(try decode(#"\udbff\udfff"#) == "\u{10FFFF}")
        #expect(try decode(#"\u0000"#) == "\u{0}")
        #expect(try decode(#"\uFFFF"#) == "\u{FFFF}")
    }

    @Test func anErrorInsideATopLevelMemberNamesIt() throws {
        func field(_ text: String) -> String?? {
            do {
                _ = try JSONParser.parse(text)
                return .none
            } catch {
                return .some(error.field)
            }
        }
        #expect(field(#"{"type":"\ud800"}"#) == .some("type"))
        #expect(field(#"{"type":"a","payload":{"k":["\udfff"]}}"#) == .some("payload"))
        #expect(field(#"{"type":"a","payload":{"\udfff":1}}"#) == .some("payload"))
        #expect(field(#"{"t\ud800":1}"#) == .some(nil), "an error in a top-level key names no member")
        #expect(field(#"["\ud800"]"#) == .some(nil))
    }

    @Test func rawNonASCIIIsKept() throws {
        let s = "aé中😀\u{2028}\u{FFFD}\u{10FFFF}"
        #expect(try JSONParser.parse("\"\(s)\"").stringValue == s)
    }

    // MARK: - Strictness

    struct Bad: CustomTestStringConvertible, Sendable {
        var input: [UInt8]
        var offset: Int
        var reason: String
        init(_ text: String, _ offset: Int, _ reason: String) { self.init(Array(text.utf8), offset, reason) }
        init(_ bytes: [UInt8], _ offset: Int, _ reason: String) { input = bytes; self.offset = offset; self.reason = reason }
        var testDescription: String { "\(input.prefix(24).map { String($0, radix: 16) }) → \(offset) \(reason.prefix(40))" }
    }

    static let badInputs: [Bad] = [
        Bad("", 0, "end of input"),
        Bad("   ", 3, "end of input"),
        Bad("[1,]", 2, "trailing comma"),
        Bad("[1, \n ]", 2, "trailing comma"),
        Bad(#"{"a":1,}"#, 6, "trailing comma"),
        Bad("[,1]", 1, "unexpected character ','"),
        Bad("[1,,2]", 3, "unexpected character ','"),
        Bad("// c\n1", 0, "unexpected character '/'"),
        Bad("[1 /* c */]", 3, "'/'"),
        Bad("1 # c", 2, "'#' after top-level value"),
        Bad("NaN", 0, "unexpected character 'N'"),
        Bad("Infinity", 0, "unexpected character 'I'"),
        Bad("-Infinity", 1, "expected digit after '-'"),
        Bad("[nan]", 1, "expected 'null'"),
        Bad("01", 1, "leading zeros"),
        Bad("-01", 2, "leading zeros"),
        Bad("[00]", 2, "leading zeros"),
        Bad("+1", 0, "unexpected character '+'"),
        Bad(".5", 0, "unexpected character '.'"),
        Bad("1.", 2, "expected digit after decimal point"),
        Bad("1.e5", 2, "expected digit after decimal point"),
        Bad("1e", 2, "expected digit in exponent"),
        Bad("1e+", 3, "expected digit in exponent"),
        Bad("-", 1, "expected digit after '-'"),
        Bad("0x10", 1, "'x' after top-level value"),
        Bad("1 2", 2, "'2' after top-level value"),
        Bad("{} x", 3, "'x' after top-level value"),
        Bad("tru", 0, "expected 'true'"),
        Bad("True", 0, "unexpected character 'T'"),
        Bad("nulll", 4, "'l' after top-level value"),
        Bad("\"a\u{01}b\"", 2, "control character 0x01"),
        Bad("\"a\nb\"", 2, "control character 0x0A"),
        Bad("\"\t\"", 1, "control character 0x09"),
        Bad("\"abc", 0, "unterminated string"),
        Bad("[\"abc\\", 1, "unterminated string"),
        Bad(#""\x""#, 1, "invalid escape '\\x'"),
        Bad(#""\U0041""#, 1, "invalid escape"),
        Bad(#"["ok", "\u12G4"]"#, 8, "invalid \\u escape"),
        Bad(#""\u12""#, 1, "invalid \\u escape"),
        Bad("'a'", 0, "unexpected character '''"),
        Bad(#"{a:1}"#, 1, "expected '\"' to begin object key"),
        Bad(#"{"a" 1}"#, 5, "expected ':'"),
        Bad(#"{"a":}"#, 5, "unexpected character '}'"),
        Bad(#"{"a":1 "b":2}"#, 7, "expected ',' or '}'"),
        Bad("[1 2]", 3, "expected ',' or ']'"),
        Bad("[1", 2, "end of input"),
        Bad(#"{"a":1"#, 6, "end of input"),
        Bad("[", 1, "end of input"),
        Bad(#"{"a":1,"a":2}"#, 7, #"duplicate key "a""#),
        Bad(#"{"x":{"k":1,"y":2,"k":3}}"#, 18, #"duplicate key "k""#),
        Bad(#"{"é":1,"\u00e9":2}"#, 8, #"duplicate key "é""#),
        Bad("{\"\(String(repeating: "k", count: 100))\":1,\"\(String(repeating: "k", count: 100))\":2}", 106,
            "duplicate key \"\(String(repeating: "k", count: 64))\"…"),
        Bad("\u{0B}1", 0, "byte 0x0B"),
        Bad("\u{A0}1", 0, "byte 0xC2"),
        Bad([0xEF, 0xBB, 0xBF, 0x31], 0, "byte 0xEF"),
        Bad([0x22, 0xC3, 0x28, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xC0, 0x80, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xE0, 0x80, 0xAF, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xED, 0xA0, 0x80, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0x61, 0x80, 0x22], 2, "invalid UTF-8"),
        Bad([0x22, 0xFF, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xE2, 0x82, 0x22], 1, "invalid UTF-8"),
        Bad([0x22, 0xF0, 0x9F, 0x98], 1, "invalid UTF-8"),
        Bad([0xFF], 0, "unexpected character byte 0xFF"),
    ]

    @Test(arguments: badInputs)
    func strictnessViolationsAreRejected(_ bad: Bad) {
        let error = #expect(throws: JSONError.self) { try JSONParser.parse(bad.input) }
        guard let error else { return }
        #expect(error.offset == bad.offset, "\(error)")
        #expect(error.reason.contains(bad.reason), "\(error)")
    }

    @Test func everyRawControlCharacterInStringIsRejected() throws {
        for c in UInt8(0)..<0x20 {
            #expect(throws: JSONError(offset: 2, reason: "unescaped control character \(JSONError.hex(c)) in string")) {
                try JSONParser.parse([0x22, 0x61, c, 0x22])
            }
        }
        #expect(try JSONParser.parse([0x22, 0x20, 0x7F, 0x22]) == .string(" \u{7F}"))
    }

    @Test func errorDescriptionNamesOffset() {
        #expect(throws: JSONError(offset: 2, reason: "trailing comma")) { try JSONParser.parse("[1,]") }
        let error = JSONError(offset: 7, reason: "unterminated string")
        #expect(error.description == "invalid JSON at byte 7: unterminated string")
    }

    @Test func largeObjectDuplicateKeysAreDetected() throws {
        // Past 16 members the parser switches from a linear scan to a hash set; both paths must agree.
        var members = (0..<40).map { "\"k\($0)\":\($0)" }
        let ok = try JSONParser.parse("{" + members.joined(separator: ",") + "}")
        #expect(ok.objectValue?.count == 40)
        #expect(ok["k39"]?.int64Value == 39)
        for dup in [3, 20, 39] {
            members.append("\"k\(dup)\":0")
            #expect(throws: JSONError.self) { try JSONParser.parse("{" + members.joined(separator: ",") + "}") }
            members.removeLast()
        }
    }

    // MARK: - Depth

    @Test func depthLimitIsExact() throws {
        func nested(_ depth: Int, _ open: String, _ inner: String, _ close: String) -> String {
            String(repeating: open, count: depth) + inner + String(repeating: close, count: depth)
        }
        #expect(try JSONParser.parse(nested(512, "[", "", "]")).arrayValue != nil)
        #expect(throws: JSONError(offset: 512, reason: "nesting deeper than 512")) {
            try JSONParser.parse(nested(513, "[", "", "]"))
        }
        #expect(throws: JSONError(offset: 512, reason: "nesting deeper than 512")) {
            try JSONParser.parse(nested(513, "[", "1", "]"))
        }
        let okObjects = nested(512, #"{"a":"#, "1", "}")
        #expect(try JSONParser.parse(okObjects).objectValue != nil)
        #expect(throws: JSONError(offset: 513 * 5 - 5, reason: "nesting deeper than 512", field: "a")) {
            try JSONParser.parse(nested(513, #"{"a":"#, "{}", "}"))
        }
        #expect(try JSONParser.parse("[[[1]]]", depthMax: 3) == .array([.array([.array([.number("1")])])]))
        #expect(throws: JSONError(offset: 3, reason: "nesting deeper than 3")) {
            try JSONParser.parse("[[[[1]]]]", depthMax: 3)
        }
        #expect(try JSONParser.parse("1", depthMax: 0) == .number("1"))
    }

    @Test func hostileNestingFailsCleanly() {
        let deep = [UInt8](repeating: UInt8(ascii: "["), count: 200_000)
        #expect(throws: JSONError(offset: 512, reason: "nesting deeper than 512")) { try JSONParser.parse(deep) }
        // Also with the limit out of the way: the parser must run out of input, not stack.
        #expect(throws: JSONError.self) { try JSONParser.parse(deep, depthMax: Int.max) }
        let mixed = Array(String(repeating: #"{"a":["#, count: 100_000).utf8)
        #expect(throws: JSONError.self) { try JSONParser.parse(mixed) }
    }
}
