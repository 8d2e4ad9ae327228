import BanyanServer
import EventLog
import Foundation
import SwiftProtobuf
import Testing

@testable import BanyanGRPC

/// The gRPC wire, pinned byte for byte: CelestialTree's `EmitRequest` as its Python client
/// encodes it (Tests/integration/test_grpc.py pins the same bytes on that side), and the native
/// messages' field numbers, so a regeneration that changes the wire fails here.
@Suite struct WireTests {
    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func emitRequestIsCelestialTreesBytes() throws {
        var request = Celestialtree_V1_EmitRequest()
        request.type = "t"
        request.message = "m"
        request.payload = Google_Protobuf_Struct(fields: ["k": Google_Protobuf_Value(numberValue: 1)])
        request.parents = [1, 300]
        let bytes: [UInt8] = try request.serializedBytes()
        #expect(Self.hex(bytes) == "0a0174" + "12016d" + "1a100a0e0a016b1209" + "11000000000000f03f" + "2203" + "01ac02")
        let back = try Celestialtree_V1_EmitRequest(serializedBytes: bytes)
        #expect(back == request)
        var response = Celestialtree_V1_EmitResponse()
        response.id = 150
        #expect(Self.hex(try response.serializedBytes() as [UInt8]) == "089601")
    }

    @Test func nativeFieldNumbersArePinned() throws {
        var event = Banyan_V1_NewEvent()
        event.type = "a"
        event.key = "k"
        event.stream = "s"
        event.message = ""
        event.payloadJson = Data("1".utf8)
        event.parents = [2]
        event.parentKeys = ["p"]
        var request = Banyan_V1_AppendRequest()
        request.events = [event]
        request.durability = .sync
        request.replicas = 1
        // An explicitly empty optional message is sent (tag 4, length 0): absent and empty differ.
        let inner = "0a0161" + "12016b" + "1a0173" + "2200" + "2a0131" + "320102" + "3a0170"
        #expect(Self.hex(try request.serializedBytes() as [UInt8]) == "0a" + String(format: "%02x", inner.count / 2) + inner + "1001" + "1801")
        var get = Banyan_V1_GetRequest()
        get.key = "k"
        get.minID = 7
        #expect(Self.hex(try get.serializedBytes() as [UInt8]) == "12016b" + "1807")
        var item = Banyan_V1_StreamItem()
        item.truncatedAfter = 5
        #expect(Self.hex(try item.serializedBytes() as [UInt8]) == "1005")
    }

    /// Go's strconv.AppendFloat(n, 'f' or 'e', -1, 64) as protojson uses it, value by value.
    @Test(arguments: [
        (1.0, "1"), (-3.0, "-3"), (0.0, "0"), (-0.0, "-0"), (1.5, "1.5"), (0.1, "0.1"), (1e-6, "0.000001"), (0.00001, "0.00001"),
        (9.99e-7, "9.99e-7"), (1e-7, "1e-7"), (1.5e-10, "1.5e-10"), (Double.leastNonzeroMagnitude, "5e-324"), (1e20, "100000000000000000000"),
        (1e21, "1e+21"), (1.2345e22, "1.2345e+22"), (9007199254740993.0, "9007199254740992"), (123456.789, "123456.789"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (-2.5e-8, "-2.5e-8"),
    ])
    func numbersAreWrittenAsGoWritesThem(_ value: Double, _ text: String) {
        #expect(CelestialTreeService.goNumber(value) == text)
    }

    @Test func structPayloadsBecomeJSONAsCelestialTreeStoresThem() throws {
        let value = Google_Protobuf_Struct(fields: [
            "b": Google_Protobuf_Value(numberValue: 2), "a": Google_Protobuf_Value(listValue: [1.5, 1e21, 1e-7, -3, .init(nilLiteral: ()), true, "x"]),
        ])
        let json = try CelestialTreeService.json(.structValue(value), depthMax: 8)
        #expect(String(decoding: json.serialized(), as: UTF8.self) == #"{"a":[1.5,1e+21,1e-7,-3,null,true,"x"],"b":2}"#)
        let nan = #expect(throws: APIError.self) { try CelestialTreeService.json(.numberValue(.nan), depthMax: 8) }
        #expect(nan?.status == .badRequest && nan?.detail == "invalid payload: nan is not a JSON number")
        var deep = Google_Protobuf_Value(numberValue: 1)
        for _ in 0..<10 { deep = Google_Protobuf_Value(listValue: [deep]) }
        let tooDeep = #expect(throws: APIError.self) { try CelestialTreeService.json(deep.kind, depthMax: 8) }
        #expect(tooDeep?.detail == "invalid payload: nested deeper than 8 levels")
        #expect(try CelestialTreeService.json(deep.kind, depthMax: 11).serialized() == Array("[[[[[[[[[[1]]]]]]]]]]".utf8))
    }
}
