import ArgumentParser
import BanyanClient
import BanyanServer
import EventLog
import Foundation

extension Banyan {
    struct Snapshot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take, list and verify snapshots: consistent point-in-time archives of a store (docs/OPERATIONS.md).",
            subcommands: [Create.self, List.self, Check.self],
            defaultSubcommand: Create.self)

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "create",
                abstract: "Write a snapshot archive to --output: from the data directory, or with --url asked of a running server, which goes on taking writes. A data directory a running server has open is asked of that server.")

            @OptionGroup var data: DataDirOptions
            @Option(help: "The archive to write; it must not exist.") var output: String
            @Option(help: "Ask the server at this URL (POST /v1/admin/snapshots, then download it). Uses BANYAN_TOKEN, an admin token, when the server has tokens.")
            var url: String?
            @Flag(help: "Then prune the store below the snapshot, once the archive has verified: whole sealed segments up to its id leave the store (docs/OPERATIONS.md, Pruning).")
            var prune = false

            func run() async throws {
                try await Banyan.reportingErrors {
                    guard !FileManager.default.fileExists(atPath: output) else {
                        throw ValidationError("--output \(output) already exists; a snapshot never overwrites a file")
                    }
                    if let url { return try await fromServer(url) }
                    if let running = ServerMark.running(dataDir: data.dataDir) {
                        Console.error("snapshot: \(data.dataDir) is open by the server at \(running); asking it")
                        return try await fromServer(running)
                    }
                    let store = try await Store.openForMaintenance(data.dataDir, instead: "banyan snapshot --url http://HOST:PORT --output \(output)")
                    defer { store.close() }
                    let progress = Console.ByteProgress("snapshot: archived")
                    let result = try store.snapshot(to: output, createdBy: "banyan \(BanyanVersion.version)", progress: { progress.report($0, of: $1) })
                    Console.error("")
                    Console.out(
                        "snapshot: \(output): events \(store.firstID)...\(result.manifest.snapshotID), epoch \(result.manifest.epoch), \(result.manifest.files.count) files, \(result.manifest.imageBytes) bytes in \(result.archiveBytes) archived, \(result.duration.inMilliseconds) ms")
                    guard prune else { return }
                    let archive = URL(fileURLWithPath: output).standardizedFileURL
                    let verify = Console.ByteProgress("prune: verified")
                    _ = try await EventStore.verifySnapshot(archive.path, scratch: archive.deletingLastPathComponent().path) { verify.report($0, of: $1) }
                    Console.error("")
                    Self.report(try store.prune(below: result.manifest.snapshotID, snapshot: archive.lastPathComponent))
                }
            }

            static func report(_ pruned: PruneResult) {
                if let note = pruned.note {
                    Console.out("prune: nothing pruned: \(note)")
                } else {
                    Console.out(
                        "prune: the store now holds ids from \(pruned.firstID): \(pruned.eventsRemoved) events in \(pruned.segmentsRemoved) segments removed, \(pruned.bytesBefore) -> \(pruned.bytesAfter) bytes")
                }
            }

            private func fromServer(_ url: String) async throws {
                let client = BanyanHTTPClient(baseURL: url, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                let answer = try JSONParser.parse(try await client.createSnapshot(prune: prune))
                guard let name = answer["snapshot"]?["name"]?.stringValue else {
                    throw LogError(.storage, "the server's answer names no snapshot: \(String(decoding: answer.serialized(), as: UTF8.self))")
                }
                let progress = Console.ByteProgress("snapshot: downloaded")
                let bytes = try await client.downloadSnapshot(name, to: output) { progress.report($0) }
                Console.error("")
                let id = answer["snapshot"]?["snapshot_id"]?.uint64Value ?? 0
                Console.out("snapshot: \(output): \(name) from \(url), events up to \(id), \(bytes) bytes")
                if let pruned = answer["pruned"], !pruned.isNull {
                    let first = pruned["first_id"]?.uint64Value ?? 0
                    Console.out(pruned["note"]?.stringValue.map { "prune: nothing pruned: \($0)" } ?? "prune: the server's store now holds ids from \(first)")
                }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "List the snapshots in a snapshot directory, or a running server's (--url), newest first.")

            @OptionGroup var data: DataDirOptions
            @Option(help: "The snapshot directory (default: snapshots in the data directory).") var snapshotDir: String?
            @Option(help: "Ask the server at this URL (GET /v1/admin/snapshots). Uses BANYAN_TOKEN.") var url: String?
            @Flag(help: "Print the JSON answer.") var json = false

            func run() async throws {
                try await Banyan.reportingErrors {
                    let listing: JSONValue
                    if let url {
                        let client = BanyanHTTPClient(baseURL: url, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                        listing = try JSONParser.parse(try await client.snapshots())
                    } else {
                        let directory = snapshotDir ?? ServerConfiguration().snapshotDirectory(dataDir: data.dataDir)
                        listing = .members(["snapshot_dir": .string(directory), "snapshots": .array(SnapshotArchive.list(directory).map { $0.json() })])
                    }
                    if json {
                        Console.write(listing.serialized() + [0x0A])
                        return
                    }
                    let entries = listing["snapshots"]?.arrayValue ?? []
                    Console.out("\(entries.count) snapshots in \(listing["snapshot_dir"]?.stringValue ?? "?")")
                    for entry in entries {
                        let name = entry["name"]?.stringValue ?? "?"
                        if let error = entry["error"]?.stringValue {
                            Console.out("  \(name)  unreadable: \(error)")
                        } else {
                            Console.out(
                                "  \(name)  events \(entry["first_id"]?.uint64Value ?? 1)...\(entry["snapshot_id"]?.uint64Value ?? 0)  epoch \(entry["epoch"]?.uint64Value ?? 0)  \(entry["archive_bytes"]?.uint64Value ?? 0) bytes  \(entry["created_at"]?.stringValue ?? "")"
                            )
                        }
                    }
                }
            }
        }

        struct Check: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "verify",
                abstract: "Check every checksum of an archive, unpack it into a scratch directory, open it read-only and verify the store; exit code 0 only when sound.")

            @Argument(help: "The archive.") var file: String
            @Option(help: "Where to unpack it for the check (removed afterwards).") var scratch = NSTemporaryDirectory()

            func run() async throws {
                try await Banyan.reportingErrors {
                    let progress = Console.ByteProgress("verify: unpacked")
                    let result = try await EventStore.verifySnapshot(file, scratch: scratch) { progress.report($0, of: $1) }
                    Console.error("")
                    let m = result.manifest
                    Console.out(
                        "snapshot verify: ok: \(file): events \(m.firstID)...\(m.snapshotID), epoch \(m.epoch), \(m.files.count) files, \(m.imageBytes) bytes, made \(m.createdAt) by \(m.createdBy); \(result.report.events) events, \(result.report.edges) edges checked"
                    )
                }
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a snapshot archive into a new or empty data directory; the store is verified before it appears there.")

        @Argument(help: "The archive.") var file: String
        @Option(help: "The data directory to create; it must not exist or be empty.") var dataDir: String

        func run() async throws {
            try await Banyan.reportingErrors {
                let progress = Console.ByteProgress("restore: unpacked")
                let result = try await EventStore.restore(file, into: dataDir) { progress.report($0, of: $1) }
                Console.error("")
                Console.out(
                    "restore: \(dataDir): events \(result.manifest.firstID)...\(result.manifest.snapshotID), epoch \(result.manifest.epoch), verified (\(result.report.events) events, \(result.report.edges) edges) in \(result.duration.inMilliseconds) ms"
                )
            }
        }
    }
}
