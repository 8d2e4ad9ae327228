import CZstd
import Foundation

/// Writes one zstd frame to a new file, with zstd's content checksum (XXH64 of everything
/// written) at its end, then a skippable frame holding the CRC-32C of every file byte before it
/// (`FileChecksum`). `finish()` ends the frames and fsyncs the file; until then the file is not a
/// valid stream. Not thread-safe: one writer per file.
final class ZstdFileWriter {
    let path: String
    private let file: UnsafeMutablePointer<FILE>
    private let context: OpaquePointer
    private var output: [UInt8]
    private var closed = false
    /// Compressed bytes written to the file so far.
    private(set) var bytesWritten: UInt64 = 0
    private var fileCRC: UInt32 = 0

    init(path: String, level: Int32) throws(LogError) {
        guard let file = fopen(path, "wbx") else {
            throw LogError(.storage, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        guard let context = ZSTD_createCCtx() else {
            fclose(file)
            throw LogError(.storage, "zstd: could not allocate a compression context")
        }
        self.path = path
        self.file = file
        self.context = context
        output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit {
        ZSTD_freeCCtx(context)
        if !closed { fclose(file) }
    }

    func write(_ bytes: [UInt8]) throws(LogError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(LogError) in try write(raw) } }.get()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(LogError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        var input = ZSTD_inBuffer(src: base, size: bytes.count, pos: 0)
        while input.pos < input.size {
            _ = try step(&input, ZSTD_e_continue)
        }
    }

    /// Ends the frame, flushes and fsyncs the file, and closes it.
    func finish() throws(LogError) {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try step(&input, ZSTD_e_end) != 0 {}
        let trailer = FileChecksum.trailer(fileCRC)
        guard trailer.withUnsafeBytes({ fwrite($0.baseAddress, 1, $0.count, file) }) == trailer.count else {
            throw LogError(.storage, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        bytesWritten += UInt64(trailer.count)
        closed = true
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        let reason = String(cString: strerror(errno))
        let closedOK = fclose(file) == 0
        guard flushed, closedOK else { throw LogError(.storage, "cannot write \(path): \(reason)") }
    }

    private func step(_ input: inout ZSTD_inBuffer, _ directive: ZSTD_EndDirective) throws(LogError) -> Int {
        let capacity = output.count
        let (remaining, produced) = output.withUnsafeMutableBytes { out -> (Int, Int) in
            var buffer = ZSTD_outBuffer(dst: out.baseAddress, size: capacity, pos: 0)
            let r = ZSTD_compressStream2(context, &buffer, &input, directive)
            return (r, buffer.pos)
        }
        if ZSTD_isError(remaining) != 0 {
            throw LogError(.storage, "zstd: \(String(cString: ZSTD_getErrorName(remaining)))")
        }
        if produced > 0 {
            let written = output.withUnsafeBytes { raw in
                fileCRC = CRC32C.update(fileCRC, UnsafeRawBufferPointer(rebasing: raw[0..<produced]))
                return fwrite(raw.baseAddress, 1, produced, file)
            }
            guard written == produced else {
                throw LogError(.storage, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            bytesWritten += UInt64(produced)
        }
        return remaining
    }
}

/// Reads what `ZstdFileWriter` wrote as exact-length pieces. Every problem is an error that
/// names the file: bytes that are not zstd, a stream cut short, a content checksum that does not
/// match (zstd checks it when the frame ends), and, through `expectEnd`, anything after the data
/// its format describes or a file checksum that does not match. Not thread-safe.
final class ZstdFileReader {
    let path: String
    private let file: UnsafeMutablePointer<FILE>
    private let stream: OpaquePointer
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var inputDone = false
    private var output: [UInt8]
    private var outputStart = 0
    private var outputEnd = 0
    /// zstd's last answer: 0 once a frame is complete and flushed.
    private var frameRemaining = 1
    /// Decompressed bytes handed out so far.
    private(set) var offset: UInt64 = 0
    /// CRC-32C of the file bytes read so far except the last `FileChecksum.trailerBytes`, which
    /// are held back in `tail` because they may be the trailer.
    private var fileCRC: UInt32 = 0
    private var tail: [UInt8] = []

    init(path: String) throws(LogError) {
        guard let file = fopen(path, "rb") else {
            throw LogError(.notFound, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard let stream = ZSTD_createDStream() else {
            fclose(file)
            throw LogError(.storage, "zstd: could not allocate a decompression stream")
        }
        ZSTD_initDStream(stream)
        self.path = path
        self.file = file
        self.stream = stream
        input = [UInt8](repeating: 0, count: ZSTD_DStreamInSize())
        output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
    }

    deinit {
        ZSTD_freeDStream(stream)
        fclose(file)
    }

    /// Exactly `count` bytes (for small, bounded pieces).
    func read(_ count: Int) throws(LogError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        try read(UInt64(count)) { chunk in bytes.append(contentsOf: chunk) }
        return bytes
    }

    /// Exactly `count` bytes, handed to `body` in chunks as they are decompressed.
    func read(_ count: UInt64, _ body: (UnsafeRawBufferPointer) throws(LogError) -> Void) throws(LogError) {
        var left = count
        while left > 0 {
            guard try fill() else {
                throw LogError(.invalidArgument, "\(path) is truncated: it ends at byte \(offset) of its content, \(left) bytes short")
            }
            let take = Int(min(UInt64(outputEnd - outputStart), left))
            let start = outputStart
            try output.withUnsafeBytes { raw in
                Result { () throws(LogError) in try body(UnsafeRawBufferPointer(rebasing: raw[start..<(start + take)])) }
            }.get()
            outputStart += take
            left -= UInt64(take)
            offset += UInt64(take)
        }
    }

    /// Succeeds when the stream ends here: the frame complete (so its checksum was checked) and
    /// nothing after it.
    func expectEnd() throws(LogError) {
        guard try !fill() else {
            throw LogError(.invalidArgument, "\(path) holds data after the end of the archive (byte \(offset) of its content)")
        }
        guard tail == FileChecksum.trailer(fileCRC) else {
            throw LogError(.invalidArgument, "\(path) is corrupt: its file checksum does not match")
        }
    }

    /// Adds `chunk` to the file checksum, all but the last bytes read, which wait in `tail`.
    private func holdBack(_ chunk: UnsafeRawBufferPointer) {
        let keep = FileChecksum.trailerBytes
        if chunk.count >= keep {
            fileCRC = CRC32C.update(fileCRC, tail)
            fileCRC = CRC32C.update(fileCRC, UnsafeRawBufferPointer(rebasing: chunk[0..<(chunk.count - keep)]))
            tail = Array(chunk[(chunk.count - keep)...])
        } else {
            tail += chunk
            let excess = tail.count - keep
            if excess > 0 {
                fileCRC = CRC32C.update(fileCRC, tail[0..<excess])
                tail.removeFirst(excess)
            }
        }
    }

    /// Makes decompressed bytes available; false at a clean end of the stream.
    private func fill() throws(LogError) -> Bool {
        while outputStart == outputEnd {
            if inputStart == inputEnd && !inputDone {
                let n = input.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
                if n == 0 {
                    if ferror(file) != 0 { throw LogError(.storage, "cannot read \(path): \(String(cString: strerror(errno)))") }
                    inputDone = true
                }
                inputStart = 0
                inputEnd = n
                input.withUnsafeBytes { raw in holdBack(UnsafeRawBufferPointer(rebasing: raw[0..<n])) }
            }
            if inputStart == inputEnd && inputDone && frameRemaining == 0 { return false }
            let (inStart, inEnd, outCapacity) = (inputStart, inputEnd, output.count)
            let (result, consumed, produced) = input.withUnsafeBytes { inRaw in
                output.withUnsafeMutableBytes { outRaw -> (Int, Int, Int) in
                    var inBuffer = ZSTD_inBuffer(src: inRaw.baseAddress, size: inEnd, pos: inStart)
                    var outBuffer = ZSTD_outBuffer(dst: outRaw.baseAddress, size: outCapacity, pos: 0)
                    let r = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                    return (r, inBuffer.pos, outBuffer.pos)
                }
            }
            if ZSTD_isError(result) != 0 {
                throw LogError(.invalidArgument, "\(path) is corrupt: zstd: \(String(cString: ZSTD_getErrorName(result))) (near byte \(offset) of its content)")
            }
            frameRemaining = result
            if consumed == inStart && produced == 0 && inputDone {
                throw LogError(.invalidArgument, "\(path) is truncated: its compressed stream ends in the middle of a frame")
            }
            inputStart = consumed
            outputStart = 0
            outputEnd = produced
        }
        return true
    }
}

/// The last 12 bytes of an archive: a zstd skippable frame (magic 0x184D2A5B and length 4, both
/// little-endian as zstd defines them) holding the CRC-32C (u32be) of every byte before it. zstd
/// itself ignores it; it catches what zstd's content checksum cannot, a changed byte that still
/// decodes to the same content (a window-size bit, an unused bit of a block).
enum FileChecksum {
    static let trailerBytes = 12

    static func trailer(_ crc: UInt32) -> [UInt8] {
        [0x5B, 0x2A, 0x4D, 0x18, 0x04, 0x00, 0x00, 0x00,
         UInt8(truncatingIfNeeded: crc >> 24), UInt8(truncatingIfNeeded: crc >> 16), UInt8(truncatingIfNeeded: crc >> 8), UInt8(truncatingIfNeeded: crc)]
    }
}
