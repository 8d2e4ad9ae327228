import Foundation

/// Output helpers: stdout for results, stderr for progress and errors.
enum Console {
    static func out(_ text: String) {
        write(Array((text + "\n").utf8))
    }

    static func write(_ bytes: [UInt8]) {
        FileHandle.standardOutput.write(Data(bytes))
    }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// A progress line that rewrites itself on a terminal, one line per report otherwise.
    static func progress(_ text: String) {
        let line = isatty(2) != 0 ? "\r" + text : text + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
