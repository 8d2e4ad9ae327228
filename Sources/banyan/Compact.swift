import ArgumentParser
import BanyanClient
import EventLog
import Foundation

extension Banyan {
    struct Compact: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop the payloads and messages of old events and keep their lineage (type, stream, time, parents, key): lineage queries answer as before.",
            discussion: """
                With --url the leader records the compaction in its log (a banyan.compaction.started event) and every follower carries out \
                the same one (docs/OPERATIONS.md, Compaction). With --data-dir it compacts a stopped store alone: nothing is recorded or \
                replicated. Uses BANYAN_TOKEN, an admin token, when the server has tokens.
                """)

        @OptionGroup var data: DataDirOptions
        @Option(help: "Compact the events with ids below this.") var before: UInt64?
        @Option(help: "Compact the events older than this, e.g. 30d, 12h, 1h30m.") var olderThan: String?
        @Option(help: "Only events of this stream.") var stream: String?
        @Option(help: "Only events of this type.") var type: String?
        @Option(help: "Ask the leader at this URL (POST /v1/admin/compactions).") var url: String?

        func validate() throws {
            guard (before == nil) != (olderThan == nil) else { throw ValidationError("give exactly one of --before ID and --older-than DURATION") }
            if let before, before < 2 { throw ValidationError("--before must be at least 2 (events below it are compacted)") }
            if let olderThan, Duration.parse(olderThan) == nil {
                throw ValidationError("--older-than takes a duration such as 90s, 12h, 30d or 1h30m, not \"\(olderThan)\"")
            }
        }

        func run() async throws {
            try await Banyan.reportingErrors {
                if let url {
                    var members: [JSONMember] = []
                    if let before { members.append(JSONMember(key: "before", value: .int(before))) }
                    if let olderThan { members.append(JSONMember(key: "older_than", value: .string(olderThan))) }
                    if let stream { members.append(JSONMember(key: "stream", value: .string(stream))) }
                    if let type { members.append(JSONMember(key: "type", value: .string(type))) }
                    let client = BanyanHTTPClient(baseURL: url, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                    Console.write(try await client.compact(JSONValue.object(members).serialized()) + [0x0A])
                    return
                }
                let store = try await Store.openForMaintenance(data.dataDir, instead: "banyan compact --url http://HOST:PORT ...")
                defer { store.close() }
                if let before, before > store.lastID + 1 {
                    throw LogError(.invalidArgument, "--before \(before) is above the last id + 1 (\(store.lastID + 1))", field: "before")
                }
                let olderThanNanos = olderThan.flatMap(Duration.parse).map { StoreOptions.wallClockNanos() - Int64($0.inMilliseconds) * 1_000_000 }
                let spec = CompactionSpec(before: before, olderThanUnixNano: olderThanNanos, through: store.lastID, stream: stream, type: type)
                let result = try store.compact(spec, control: 0, progress: { done, last in
                    if done % 262_144 < 2_048 || done == last { Console.progress("compact: \(done) of \(last) ids") }
                })
                Console.error("")
                Console.out(
                    "compact: \(result.compacted) of \(result.examined) events compacted; record bytes \(result.recordBytesBefore) -> \(result.recordBytesAfter); log family \(result.logBytesBefore) -> \(result.logBytesAfter) bytes (\(result.bytesReclaimed) reclaimed) in \(result.duration.inMilliseconds) ms")
            }
        }
    }
}
