import ArgumentParser
import BanyanClient
import Foundation

extension Banyan {
    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a follower the leader of a new epoch (POST /v1/admin/promote); prints the new role and epoch.",
            discussion: """
                The follower stops pulling from its leader, starts epoch N+1 with a banyan.epoch event, and takes writes. \
                Point the other followers at it (restart them with --follow URL) and restart the old leader with --follow URL \
                so it drops its unreplicated tail (docs/REPLICATION.md). Uses BANYAN_TOKEN (an admin token) when the server has tokens.
                """)

        @Option(help: "The follower's address.") var url = "http://127.0.0.1:7777"
        @Option(help: "The highest epoch you know of (the failed leader's, or the last promote's): the new epoch is above it.")
        var afterEpoch: UInt64 = 0
        @Flag(help: "Promote even a node that lacks writes confirmed by a replica (its confirmed_id is past its applied_id): they are lost.")
        var force = false

        func run() async throws {
            try await Banyan.reportingErrors {
                let client = BanyanHTTPClient(baseURL: url, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                Console.write(try await client.promote(afterEpoch: afterEpoch, force: force) + [0x0A])
            }
        }
    }
}
