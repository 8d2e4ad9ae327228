import Foundation

/// Output helpers: stdout for results, stderr for progress and errors.
enum Console {
    static func out(_ text: String) {
        write(Array((text + "\n").utf8))
    }

    /// A reader that went away (`banyan run events R | head`) ends the command as SIGPIPE would
    /// end a C tool (exit status 141), instead of trapping in Foundation's `write`.
    static func write(_ bytes: [UInt8]) {
        do { try FileHandle.standardOutput.write(contentsOf: Data(bytes)) } catch { exit(141) }
    }

    static func error(_ text: String) {
        _ = try? FileHandle.standardError.write(contentsOf: Data((text + "\n").utf8))
    }

    /// Progress in bytes, at most once per `step` bytes (and at the end), so a log gets a line
    /// per 64 MiB rather than per chunk. Not thread-safe: one per task.
    final class ByteProgress {
        private let label: String
        private let step: UInt64
        private var shown: UInt64?

        init(_ label: String, step: UInt64 = 64 << 20) {
            self.label = label
            self.step = step
        }

        func report(_ done: UInt64, of total: UInt64? = nil) {
            let mark = done / step
            guard shown != mark || done == total else { return }
            shown = mark
            let mib = { (bytes: UInt64) in String(format: "%.1f", Double(bytes) / 1_048_576) }
            progress("\(label): \(mib(done))" + (total.map { " of \(mib($0))" } ?? "") + " MiB")
        }
    }

    /// A progress line that rewrites itself on a terminal, one line per report otherwise.
    static func progress(_ text: String) {
        let line = isatty(2) != 0 ? "\r" + text : text + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
