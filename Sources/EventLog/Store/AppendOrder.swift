/// For a caller that must keep several appends in the order it started them without waiting for
/// each to be durable (an HTTP connection's pipelined requests, `PipelinedHTTP1Channel`): an
/// append calls `placed` once its batch is queued for the writer, whose queue is the commit order.
/// The caller starts the next append only then, and the appends share fsyncs.
public final class AppendOrder: Sendable {
    let placed: @Sendable () -> Void

    public init(placed: @escaping @Sendable () -> Void) {
        self.placed = placed
    }

    // A class as the value: with an optional closure as the value (through the @TaskLocal
    // wrapper or an instance like this one) the release build crashed in
    // swift_task_localValuePush on the first pipelined request.
    public static let current = TaskLocal<AppendOrder?>(wrappedValue: nil)
}
