import Foundation
import NIOHTTP1

/// The log-shipping protocol between a leader and its followers (docs/REPLICATION.md), defined
/// once for both sides.
///
/// `GET /v1/replication/groups?after=ID&wait_ms=N&bytes_max=N`, with the follower's report in
/// headers (`Banyan-Follower`: its advertised URL, `Banyan-Applied-Id`, `Banyan-Durable-Id`,
/// `Banyan-Epoch`), answers `200` with `Content-Type: application/vnd.banyan.commit-groups` and a
/// body of frames, each `u32be length` then one encoded commit group; the groups follow `after`
/// in order. An empty body means nothing arrived within `wait_ms`. The leader's last id and epoch
/// come back in `Banyan-Last-Id` and `Banyan-Epoch`.
public enum Replication {
    public static let contentType = "application/vnd.banyan.commit-groups"
    public static let path = "/v1/replication/groups"
    public static let epochPath = "/v1/replication/epoch"
    /// The newest snapshot, for a follower bootstrapping below the leader's pruned prefix.
    public static let snapshotPath = "/v1/replication/snapshot"
    /// The commit-group wire format both sides must speak (`CommitGroup` version byte).
    public static let formatVersion = 1

    public enum Header {
        public static let follower = "Banyan-Follower"
        public static let appliedID = "Banyan-Applied-Id"
        public static let durableID = "Banyan-Durable-Id"
        public static let epoch = "Banyan-Epoch"
        /// The leader epoch the follower reconciled its log against (Kafka's current leader
        /// epoch in a fetch): a leader in another epoch refuses the pull.
        public static let leaderEpoch = "Banyan-Leader-Epoch"
        public static let lastID = "Banyan-Last-Id"
        public static let leader = "Banyan-Leader"
        /// The highest id the leader knows a follower holds durably (its confirmed watermark).
        public static let confirmedID = "Banyan-Confirmed-Id"
        public static let format = "Banyan-Format"
        /// The name of the archive `snapshotPath` sent.
        public static let snapshotName = "Banyan-Snapshot-Name"
    }

    /// Frames `groups` for the wire.
    public static func frame(_ groups: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(groups.reduce(0) { $0 + 4 + $1.count })
        for group in groups {
            let n = UInt32(group.count)
            out += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
            out += group
        }
        return out
    }

    /// The groups of a framed body; throws when a frame runs past the body.
    public static func unframe(_ body: [UInt8]) throws -> [[UInt8]] {
        var groups: [[UInt8]] = []
        var i = 0
        while i < body.count {
            guard i + 4 <= body.count else { throw BanyanClientError(status: 0, error: "replication: a truncated frame header") }
            let n = Int(body[i]) << 24 | Int(body[i + 1]) << 16 | Int(body[i + 2]) << 8 | Int(body[i + 3])
            i += 4
            guard n <= body.count - i else { throw BanyanClientError(status: 0, error: "replication: a frame runs past the body") }
            groups.append(Array(body[i..<(i + n)]))
            i += n
        }
        return groups
    }

    /// What one pull brought back.
    public struct Pull: Sendable {
        public var groups: [[UInt8]]
        public var leaderLastID: UInt64
        public var leaderEpoch: UInt64
        public var confirmedID: UInt64
        public var bytes: Int
    }

    /// A leader's answer to "where does epoch E end in your log?" (`GET /v1/replication/epoch`).
    public struct EpochAnswer: Sendable, Decodable {
        /// The largest epoch of the leader's history not above E (0: none), and its last id.
        public var epoch: UInt64
        public var endID: UInt64
        /// How that epoch began on the leader: its first id and the CRC-32C of that record.
        public var startID: UInt64?
        public var startCRC: UInt32?
        public var leaderEpoch: UInt64
        public var lastID: UInt64

        enum CodingKeys: String, CodingKey {
            case epoch, endID = "end_id", startID = "start_id", startCRC = "start_crc", leaderEpoch = "leader_epoch", lastID = "last_id"
        }

        public init(epoch: UInt64, endID: UInt64, startID: UInt64?, startCRC: UInt32?, leaderEpoch: UInt64, lastID: UInt64) {
            self.epoch = epoch
            self.endID = endID
            self.startID = startID
            self.startCRC = startCRC
            self.leaderEpoch = leaderEpoch
            self.lastID = lastID
        }
    }

    /// The follower's report sent with each pull (and what the leader reads from its headers).
    public struct Report: Sendable {
        public var follower: String
        public var appliedID: UInt64
        public var durableID: UInt64
        public var epoch: UInt64
        /// The leader epoch the follower reconciled against; only a leader in that epoch counts
        /// the report, since only then is the follower's log known to be a prefix of its own.
        public var leaderEpoch: UInt64

        public init(follower: String, appliedID: UInt64, durableID: UInt64, epoch: UInt64, leaderEpoch: UInt64) {
            self.follower = follower
            self.appliedID = appliedID
            self.durableID = durableID
            self.epoch = epoch
            self.leaderEpoch = leaderEpoch
        }
    }
}

extension BanyanHTTPClient {
    /// Pulls the commit groups after `after` from a leader (waiting up to `waitMs` when there are
    /// none yet), reporting how far this follower has got.
    public func pullGroups(after: UInt64, report: Replication.Report, waitMs: Int, bytesMax: Int) async throws -> Replication.Pull {
        let path = "\(Replication.path)?after=\(after)&wait_ms=\(waitMs)&bytes_max=\(bytesMax)"
        let headers = [
            Replication.Header.follower: report.follower, Replication.Header.appliedID: String(report.appliedID),
            Replication.Header.durableID: String(report.durableID), Replication.Header.epoch: String(report.epoch),
            Replication.Header.leaderEpoch: String(report.leaderEpoch),
            Replication.Header.format: String(Replication.formatVersion),
        ]
        let (body, responseHeaders) = try await exchange(path: path, method: .GET, headers: headers, body: nil, bytesMax: bytesMax + (16 << 20))
        return Replication.Pull(
            groups: try Replication.unframe(body),
            leaderLastID: responseHeaders.first(name: Replication.Header.lastID).flatMap(UInt64.init) ?? 0,
            leaderEpoch: responseHeaders.first(name: Replication.Header.epoch).flatMap(UInt64.init) ?? 0,
            confirmedID: responseHeaders.first(name: Replication.Header.confirmedID).flatMap(UInt64.init) ?? 0,
            bytes: body.count)
    }

    /// Where `epoch` ends in the leader's log: the largest epoch there not above it, and its
    /// last id (`GET /v1/replication/epoch`).
    public func epochEnd(_ epoch: UInt64) async throws -> Replication.EpochAnswer {
        let (body, _) = try await exchange(path: "\(Replication.epochPath)?epoch=\(epoch)", method: .GET, headers: [:], body: nil)
        return try JSONDecoder().decode(Replication.EpochAnswer.self, from: Data(body))
    }

    /// Presents `epoch` to a node (a new leader to its former leader), which fences itself if it
    /// leads an older epoch. A 409 (it is not, or no longer, the leader) is success.
    public func presentEpoch(_ epoch: UInt64) async throws {
        do {
            _ = try await exchange(
                path: "\(Replication.epochPath)?epoch=\(epoch)", method: .GET, headers: [Replication.Header.epoch: String(epoch)], body: nil)
        } catch let error as BanyanClientError where error.status == 409 {
            return
        }
    }

    /// Promotes the node to leader (`POST /v1/admin/promote`, admin role); its JSON answer.
    public func promote(afterEpoch: UInt64 = 0, force: Bool = false) async throws -> [UInt8] {
        try await exchange(path: "/v1/admin/promote?after_epoch=\(afterEpoch)\(force ? "&force=true" : "")", method: .POST, headers: ["Content-Type": "application/json"], body: nil).body
    }

    /// `GET /v1/status`, as JSON text.
    public func status() async throws -> [UInt8] {
        try await exchange(path: "/v1/status", method: .GET, headers: [:], body: nil).body
    }
}
