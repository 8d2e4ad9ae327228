import Foundation

/// Runs one `shell` task attempt: argv through `/usr/bin/env` (so `run: [make]` is found on
/// PATH), the task's environment on top of the engine's plus `BANYAN_RUN_ID` and
/// `BANYAN_ATTEMPT_KEY` (so a task can make itself idempotent), stdout and stderr kept as bounded
/// tails, and a timeout that kills the process.
struct ShellTask {
    var argv: [String]
    var env: [String: String]
    var cwd: String?
    var timeout: Duration?
    /// Bytes of stdout kept (the tail), and of stderr.
    var stdoutBytesMax = 1 << 20
    var stderrBytesMax = 4_096

    struct Result {
        var exitCode: Int32
        var stdout: [UInt8]
        var stderr: [UInt8]
        var timedOut: Bool
        /// stdout was longer than `stdoutBytesMax` and cut at its start.
        var truncated: Bool
    }

    func run() async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--"] + argv
        process.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new }
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let stdout = Tail(max: stdoutBytesMax)
        let stderr = Tail(max: stderrBytesMax)
        out.fileHandleForReading.readabilityHandler = { stdout.append($0.availableData) }
        err.fileHandleForReading.readabilityHandler = { stderr.append($0.availableData) }
        let finished = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in finished.continuation.finish() }
        try process.run()
        let pid = process.processIdentifier
        let killer: Task<Bool, Never>? = timeout.map { limit in
            Task {
                do { try await Task.sleep(for: limit) } catch { return false }
                guard process.isRunning else { return false }
                kill(pid, SIGKILL)
                return true
            }
        }
        for await _ in finished.stream {}
        process.waitUntilExit()
        killer?.cancel()
        let timedOut = await killer?.value ?? false
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        stdout.append(out.fileHandleForReading.readDataToEndOfFile())
        stderr.append(err.fileHandleForReading.readDataToEndOfFile())
        return Result(exitCode: process.terminationStatus, stdout: stdout.bytes, stderr: stderr.bytes, timedOut: timedOut, truncated: stdout.cut)
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
