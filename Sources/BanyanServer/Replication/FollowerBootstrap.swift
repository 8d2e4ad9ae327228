import BanyanClient
import EventLog
import Foundation
import Logging
import NIOCore

/// A new follower of a leader that pruned its log cannot get the pruned events by shipping: the
/// leader no longer has them. Before its store opens, it restores the leader's newest snapshot
/// (downloaded over HTTP, every checksum checked, the image verified) into its empty data
/// directory, and then follows from the snapshot's id like any follower (docs/REPLICATION.md,
/// "Bootstrapping from a snapshot"). A follower that has a store of its own that ends below the
/// leader's first id is refused with what to do: its data is never removed for it.
public enum FollowerBootstrap {
    static let probeTimeout: TimeAmount = .seconds(2)

    /// Restores the leader's newest snapshot into `dataDir` when this follower needs it; returns
    /// what it restored (nil: not needed, or the leader could not be asked, and the follower's
    /// own retries will tell).
    public static func prepare(dataDir given: String, leader: String, token: String?, logger: Logger) async throws -> RestoreResult? {
        let dataDir = URL(fileURLWithPath: given).standardizedFileURL.path
        let client = BanyanHTTPClient(baseURL: leader, token: token)
        let first: EventID
        do {
            // A leader that is down must not hold up the start: the follower retries by itself.
            var probe = client
            probe.timeout = probeTimeout
            let status = try JSONParser.parse(try await probe.status())
            first = status["first_id"]?.uint64Value ?? 1
        } catch {
            logger.warning("bootstrap: cannot ask the leader for its first id; following without", metadata: ["leader": "\(leader)", "error": "\(error)"])
            return nil
        }
        guard first > 1 else { return nil }
        if FileManager.default.fileExists(atPath: dataDir + "/CURRENT") {
            var options = StoreOptions()
            options.readOnly = true
            let store = try await EventStore.open(at: dataDir, options: options)
            let last = store.lastID
            store.close()
            guard last + 1 < first else { return nil }
            if last == 0 {
                // An empty store (a first start while the leader could not be asked): nothing to
                // keep, so it makes way for the snapshot.
                try removeEmptyStore(dataDir)
            } else {
                throw LogError(
                .pruned,
                    "this follower's log ends at \(last), but the leader at \(leader) was pruned below \(first): shipping cannot fill the gap. Move \(dataDir) aside and start again: a follower with an empty data directory bootstraps from the leader's newest snapshot")
            }
        }
        let archive = "\(dataDir).bootstrap-\(getpid())\(SnapshotArchive.fileExtension)"
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try? FileManager.default.removeItem(atPath: archive)
        logger.notice("bootstrap: the leader was pruned below \(first); restoring its newest snapshot", metadata: ["leader": "\(leader)"])
        let (name, bytes) = try await client.downloadLatestSnapshot(to: archive)
        let manifest = try SnapshotArchive.readManifest(archive)
        guard manifest.snapshotID + 1 >= first else {
            throw LogError(
                .pruned,
                "the leader's newest snapshot \(name) ends at \(manifest.snapshotID), below its first id \(first): take a new snapshot on the leader (POST /v1/admin/snapshots) and start this follower again")
        }
        let result = try await EventStore.restore(archive, into: dataDir)
        logger.notice("bootstrap: restored the leader's snapshot", metadata: [
            "snapshot": "\(name)", "bytes": "\(bytes)", "snapshot_id": "\(result.manifest.snapshotID)",
            "duration_ms": "\(result.duration.inMilliseconds)",
        ])
        return result
    }

    /// Removes a store that holds no event, and nothing else the directory might hold: a
    /// snapshot directory inside it with archives in it refuses.
    private static func removeEmptyStore(_ dataDir: String) throws {
        let snapshots = dataDir + "/snapshots"
        if let names = try? FileManager.default.contentsOfDirectory(atPath: snapshots), !names.isEmpty {
            throw LogError(.invalidArgument, "\(dataDir) holds an empty store and snapshots in \(snapshots); move them aside to bootstrap this follower")
        }
        try FileManager.default.removeItem(atPath: dataDir)
    }
}
