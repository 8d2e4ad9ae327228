import Foundation

/// Runs one `shell` task attempt: the program found on PATH (argv[0] without a `/`), in a
/// process group of its own (Foundation's `Process` makes each child a group leader), with the task's environment over the
/// engine's (less `BANYAN_TOKEN`), stdout and stderr kept as bounded tails. At the timeout, and
/// when the program ends, the whole process group is killed: nothing it started outlives the
/// attempt or holds its pipes open.
struct ShellTask {
    var argv: [String]
    var env: [String: String]
    var cwd: String?
    var timeout: Duration?
    /// Bytes of stdout kept (the tail), and of stderr.
    var stdoutBytesMax = 1 << 20
    var stderrBytesMax = 4_096
    /// Called with the text of each stdout line that starts with `::progress ` (such lines are
    /// not part of the output), as the program writes them.
    var onProgress: (@Sendable (String) -> Void)?

    struct Result {
        var exitCode: Int32
        /// Ended by a signal (`exitCode` is the signal's number).
        var signaled: Bool
        var stdout: [UInt8]
        var stderr: [UInt8]
        var timedOut: Bool
        /// stdout was longer than `stdoutBytesMax` and cut at its start.
        var truncated: Bool
    }

    func run() async throws -> Result {
        guard let program = argv.first, !program.isEmpty else { throw Failure(message: "run names no program") }
        guard let path = Self.resolve(program, env["PATH"] ?? ProcessInfo.processInfo.environment["PATH"]) else {
            throw Failure(message: "\(program): no such program on PATH")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["BANYAN_TOKEN"] = nil
        process.environment = environment.merging(env) { _, new in new }
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let stdout = Tail(max: stdoutBytesMax)
        let stderr = Tail(max: stderrBytesMax)
        let lines = ProgressLines(tail: stdout, onProgress: onProgress)
        let finished = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in finished.continuation.finish() }
        try process.run()
        // Each pipe is read to its end on a thread of its own, in blocking reads: no
        // `readabilityHandler` (a dispatch source), whose last chunk could land after the output
        // was taken, and whose cancellation has crashed libdispatch on Linux.
        let outRead = Self.drain(out.fileHandleForReading) { lines.append($0) }
        let errRead = Self.drain(err.fileHandleForReading) { stderr.append($0) }
        let pid = process.processIdentifier
        // The child leads its own process group: its pid is the group's id.
        let killer: Task<Bool, Never>? = timeout.map { limit in
            Task {
                do { try await Task.sleep(for: limit) } catch { return false }
                guard process.isRunning else { return false }
                kill(-pid, SIGKILL)
                return true
            }
        }
        // Foundation reports the end only once the pipes close, which a child left running in
        // the background would hold off: watch the program itself, then end its group.
        await withTaskCancellationHandler {
            var pause = Duration.milliseconds(1)
            while !Self.exited(pid) {
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
                if Task.isCancelled { break }
            }
        } onCancel: {
            kill(-pid, SIGKILL)
        }
        kill(-pid, SIGKILL)  // what it left running in its group
        for await _ in finished.stream {}
        process.waitUntilExit()
        killer?.cancel()
        let timedOut = await killer?.value ?? false
        for await _ in outRead {}
        for await _ in errRead {}
        lines.finish()
        return Result(
            exitCode: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal, stdout: stdout.bytes, stderr: stderr.bytes,
            timedOut: timedOut, truncated: stdout.cut)
    }

    /// Reads `handle` to its end on a new thread, handing each chunk to `sink`; the stream ends
    /// after the last chunk was handed over.
    static func drain(_ handle: FileHandle, _ sink: @escaping @Sendable (Data) -> Void) -> AsyncStream<Void> {
        let (stream, done) = AsyncStream<Void>.makeStream()
        let thread = Thread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                sink(chunk)
            }
            done.finish()
        }
        thread.stackSize = 256 << 10
        thread.start()
        return stream
    }

    /// Whether process `pid` has ended: gone, or a zombie waiting to be reaped (Linux `/proc`).
    static func exited(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.range(of: ") ", options: .backwards) else { return true }
        return stat[close.upperBound...].first == "Z"
    }

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// `program`'s path: as given when it holds a `/`, else the first executable of that name
    /// on `PATH`.
    static func resolve(_ program: String, _ path: String?) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Splits stdout into lines: progress lines go to `onProgress`, the rest to the tail. A
    /// line is held until its newline, at most `lineBytesMax` (a longer one is output, never
    /// progress); without `onProgress` everything goes straight to the tail.
    final class ProgressLines: @unchecked Sendable {
        static let marker = Array("::progress ".utf8)
        static let lineBytesMax = 64 << 10
        private let lock = NSLock()
        private var pending: [UInt8] = []
        let tail: Tail
        let onProgress: (@Sendable (String) -> Void)?

        init(tail: Tail, onProgress: (@Sendable (String) -> Void)?) {
            self.tail = tail
            self.onProgress = onProgress
        }

        func append(_ data: Data) {
            guard let onProgress else { return tail.append(data) }
            guard !data.isEmpty else { return }
            lock.lock()
            defer { lock.unlock() }
            pending += data
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[...newline])
                pending.removeSubrange(...newline)
                if line.starts(with: Self.marker) {
                    onProgress(String(decoding: line.dropFirst(Self.marker.count).dropLast(), as: UTF8.self))
                } else {
                    tail.append(Data(line))
                }
            }
            if pending.count > Self.lineBytesMax {
                tail.append(Data(pending))
                pending = []
            }
        }

        /// The program ended: a last line without a newline is output.
        func finish() {
            lock.lock()
            defer { lock.unlock() }
            if !pending.isEmpty { tail.append(Data(pending)) }
            pending = []
        }
    }

    /// The last `max` bytes written to a pipe.
    final class Tail: @unchecked Sendable {
        private let lock = NSLock()
        private var buffer: [UInt8] = []
        private(set) var cut = false
        let max: Int

        init(max: Int) { self.max = max }

        func append(_ data: Data) {
            guard !data.isEmpty else { return }
            lock.lock()
            defer { lock.unlock() }
            buffer += data
            if buffer.count > max {
                buffer.removeFirst(buffer.count - max)
                cut = true
            }
        }

        var bytes: [UInt8] {
            lock.lock()
            defer { lock.unlock() }
            return buffer
        }
    }
}
