/// Every bound on what a workflow definition may hold, in one place (docs/WORKFLOWS.md, "Limits").
public struct WorkflowLimits: Sendable, Hashable {
    /// A definition file.
    public var definitionBytesMax = 1 << 20
    public var tasksMax = 10_000
    public var inputsMax = 1_000
    /// `needs` of one task.
    public var needsMax = 1_000
    /// A `start_when` condition, and one template's text.
    public var expressionBytesMax = 4_096
    /// Parentheses and `!` inside one condition.
    public var expressionDepthMax = 64
    /// Nesting of a value (a request body, an input's default).
    public var valueDepthMax = 32
    /// A workflow's `concurrency` (tasks of one run at once).
    public var concurrencyMax = 1_000
    /// `retry.max_attempts`.
    public var attemptsMax = 100
    /// A task id, input name or workflow name.
    public var nameBytesMax = 128
    /// Entries of a shell task's `run` (argv).
    public var argvMax = 4_096
    /// Statuses of an http task's `expect`.
    public var expectedStatusesMax = 100

    public init() {}

    /// Run ids and engine ids: 1-64 name bytes.
    public static let runIDBytesMax = 64

    /// 1-`bytesMax` name bytes: run, engine, step and signal names.
    public static func isName(_ text: String, bytesMax: Int) -> Bool {
        !text.isEmpty && text.utf8.count <= bytesMax && text.utf8.allSatisfy(isNameByte)
    }

    /// The bytes of a name: letters, digits, `_` and `-`.
    public static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
    }
}
