import Testing
@testable import BanyanClient

/// Server-sent events as `GET /v1/stream` writes them, read back frame by frame.
struct SSEParserTests {
    @Test func framesCommentsAndSplitsAreRead() throws {
        var parser = SSEParser(frameBytesMax: 1 << 20)
        let text = "id: 42\nevent: event\ndata: {\"id\":42}\n\n: heartbeat\n\nid: 43\r\nevent: truncated\r\ndata: {\"after\":\r\ndata: 40}\r\n\r\n"
        var frames: [StreamFrame] = []
        // Fed a byte at a time: chunk boundaries fall anywhere.
        for byte in Array(text.utf8) { frames += try parser.feed([byte]) }
        #expect(frames == [
            StreamFrame(id: 42, event: "event", data: Array("{\"id\":42}".utf8)),
            StreamFrame(id: 43, event: "truncated", data: Array("{\"after\":\n40}".utf8)),
        ])
        #expect(try parser.feed(Array("data: x\n".utf8)).isEmpty, "a frame ends at a blank line, not before")
        #expect(try parser.feed(Array("\n".utf8)) == [StreamFrame(id: nil, event: "message", data: Array("x".utf8))])
    }

    @Test func aFrameOverTheLimitEndsTheStream() {
        var parser = SSEParser(frameBytesMax: 16)
        #expect(throws: SSEParser.TooLarge.self) { try parser.feed(Array("data: 0123456789abcdef\n\n".utf8)) }
    }
}
