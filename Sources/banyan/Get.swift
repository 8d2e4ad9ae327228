import Foundation
import ArgumentParser
import EventLog

extension Banyan {
    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one event as JSON, by id or by key (reads the data directory; works beside a running server).")

        @OptionGroup var data: DataDirOptions
        @Argument(help: "Event id, or a key with --key.") var target: String
        @Flag(help: "Treat the argument as a key.") var key = false

        func run() async throws {
            try await Banyan.reportingErrors {
                let store = try await Store.openReadOnly(data.dataDir)
                defer { store.close() }
                let event: Event?
                if key {
                    event = try store.event(key: target)
                } else {
                    guard let id = UInt64(target), id > 0 else {
                        throw LogError(.invalidArgument, "\"\(target)\" is not an event id (use --key for keys)")
                    }
                    event = try store.event(id)
                }
                guard let event else { throw LogError(.notFound, "event \(target) not found") }
                var w = JSONWriter()
                EventStore.writeExportLine(event, into: &w)
                Console.write(w.bytes)
            }
        }
    }
}

enum Store {
    static func openReadOnly(_ path: String, walDamage: WALDamagePolicy = .refuse) async throws -> EventStore {
        var options = StoreOptions()
        options.readOnly = true
        options.walDamage = walDamage
        return try await EventStore.open(at: path, options: options)
    }

    /// An existing store opened for a maintenance job without a server: writable, but as a
    /// follower, so nothing is appended (no genesis, no lost-id markers). A store a server has
    /// open is refused with `instead`, the command that asks the server.
    static func openForMaintenance(_ path: String, instead: String) async throws -> EventStore {
        guard FileManager.default.fileExists(atPath: path + "/CURRENT") else { throw LogError(.notFound, "no Banyan store in \(path)") }
        var options = StoreOptions()
        options.role = .follower
        options.createGenesis = false
        do {
            return try await EventStore.open(at: path, options: options)
        } catch let error as LogError where error.cause?.code == .locked {
            throw LogError(.invalidArgument, "\(path) is in use by a running server; ask it instead: \(instead)")
        }
    }
}
