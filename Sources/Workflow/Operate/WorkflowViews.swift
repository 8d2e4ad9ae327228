/// The views of the log a process keeps for workflows: uploaded definitions and the run history.
/// One per process, shared by the API and the engine's scheduler (`serve --workflows`,
/// `workflow engine --listen`), so each event is read and held once.
public struct WorkflowViews: Sendable {
    public let catalog = DefinitionCatalog()
    public let runs = RunIndex()

    public init() {}
}
