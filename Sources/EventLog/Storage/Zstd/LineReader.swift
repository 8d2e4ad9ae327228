import CZstd
import Foundation

/// Reads a file line by line (LF-separated, a trailing CR dropped), decompressing zstd on the
/// fly when the file name ends in `.zst`. Lines longer than `lineBytesMax` are an error rather
/// than unbounded memory.
///
/// Not thread-safe: one reader per file. The zstd stream is freed in `deinit`.
public final class LineReader {
    public let path: String
    private let file: UnsafeMutablePointer<FILE>
    private let zstd: OpaquePointer?
    private let lineBytesMax: Int
    private var input = [UInt8](repeating: 0, count: 1 << 17)
    private var inputStart = 0
    private var inputEnd = 0
    private var pending: [UInt8] = []
    private var pendingStart = 0
    private var finished = false
    /// 1-based number of the line last returned.
    public private(set) var lineNumber = 0

    public init(path: String, lineBytesMax: Int = 16 << 20) throws(LogError) {
        guard let file = fopen(path, "rb") else {
            throw LogError(.notFound, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.file = file
        self.lineBytesMax = lineBytesMax
        zstd = path.hasSuffix(".zst") ? ZSTD_createDStream() : nil
        if let zstd { ZSTD_initDStream(zstd) }
    }

    deinit {
        if let zstd { ZSTD_freeDStream(zstd) }
        fclose(file)
    }

    /// The next line without its terminator, or nil at the end of the file.
    public func nextLine() throws(LogError) -> [UInt8]? {
        while true {
            if let newline = pending[pendingStart...].firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(pending[pendingStart..<newline])
                pendingStart = newline + 1
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                lineNumber += 1
                return line
            }
            if pending.count - pendingStart > lineBytesMax {
                throw LogError(.invalidArgument, "\(path): line \(lineNumber + 1) is longer than \(lineBytesMax) bytes")
            }
            if finished {
                guard pendingStart < pending.count else { return nil }
                let line = Array(pending[pendingStart...])
                pendingStart = pending.count
                lineNumber += 1
                return line
            }
            compact()
            try fill()
        }
    }

    private func compact() {
        if pendingStart > 0 {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
    }

    private func fill() throws(LogError) {
        if inputStart == inputEnd {
            let n = input.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 {
                if ferror(file) != 0 { throw LogError(.storage, "\(path): read error") }
                finished = true
                return
            }
            inputStart = 0
            inputEnd = n
        }
        guard let zstd else {
            pending.append(contentsOf: input[inputStart..<inputEnd])
            inputStart = inputEnd
            return
        }
        var output = [UInt8](repeating: 0, count: 1 << 17)
        let (produced, error): (Int, String?) = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes in
                var inBuffer = ZSTD_inBuffer(src: inBytes.baseAddress.map { $0 + inputStart }, size: inputEnd - inputStart, pos: 0)
                var outBuffer = ZSTD_outBuffer(dst: outBytes.baseAddress, size: outBytes.count, pos: 0)
                let rc = ZSTD_decompressStream(zstd, &outBuffer, &inBuffer)
                inputStart += inBuffer.pos
                if ZSTD_isError(rc) != 0 { return (0, String(cString: ZSTD_getErrorName(rc))) }
                return (outBuffer.pos, nil)
            }
        }
        if let error { throw LogError(.invalidArgument, "\(path): zstd: \(error)") }
        pending.append(contentsOf: output[0..<produced])
    }
}
