import ArgumentParser
import BanyanClient
import BanyanServer
import EventLog
import Foundation

extension Banyan {
    struct ClusterCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cluster", abstract: "A cluster of nodes in etcd (serve --cluster).", subcommands: [Status.self, Handover.self])

        struct Handover: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Hand the leadership to another member: the leader stops taking writes, waits until the member holds every event durably, and steps down; the member leads a new epoch. Nothing acknowledged is lost. Uses BANYAN_TOKEN (admin) when the leader has tokens.")
            @OptionGroup var at: ClusterOptions
            @Option(help: "The member to hand the leadership to: its advertised URL, as banyan cluster status lists it.") var to: String

            func run() async throws {
                let cluster = at.cluster
                try await Banyan.reportingErrors {
                    let client = EtcdClient(endpoints: try EtcdClient.endpoints(at.etcd))
                    guard let held = try await client.get(ClusterMember.leaderKey(cluster)),
                        let leader = ClusterMember.leader(in: held.value)?.url
                    else { throw ValidationError("cluster \(cluster) has no leader now; nothing to hand over") }
                    var query = URLComponents()
                    query.queryItems = [URLQueryItem(name: "to", value: to)]
                    var api = BanyanHTTPClient(baseURL: leader, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                    // The leader waits up to 30 s for the target to catch up, then up to 30 s for it to lead.
                    api.timeout = .seconds(75)
                    let answer = try await api.request("POST", path: "/v1/admin/handover" + (query.percentEncodedQuery.map { "?" + $0 } ?? ""))
                    Console.write(answer + [0x0A])
                }
            }
        }

        struct Status: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "The members of a cluster as etcd holds them: each node's URL, role, epoch, last id, lag and lease time left.")
            @OptionGroup var at: ClusterOptions
            @Flag(help: "Print JSON.") var json = false

            func run() async throws {
                let cluster = at.cluster
                try await Banyan.reportingErrors {
                    let client = EtcdClient(endpoints: try EtcdClient.endpoints(at.etcd))
                    let prefix = ClusterMember.membersPrefix(cluster)
                    var members: [(url: String, value: JSONValue, ttl: Int?)] = []
                    for kv in try await client.range(prefix: prefix) {
                        let value = (try? JSONParser.parse(kv.value)) ?? .null
                        members.append((String(kv.key.dropFirst(prefix.count)), value, try await client.timeToLive(kv.lease)))
                    }
                    let newest = members.compactMap { $0.value["last_id"]?.uint64Value }.max() ?? 0
                    let rows: [JSONValue] = members.map { m in
                        let last = m.value["last_id"]?.uint64Value
                        return .members([
                            "url": .string(m.url), "role": m.value["role"] ?? .null, "epoch": m.value["epoch"] ?? .null,
                            "last_id": m.value["last_id"] ?? .null, "lag_ids": last.map { .int(newest - $0) } ?? .null,
                            "lease_ttl_left_seconds": m.ttl.map { .int($0) } ?? .null,
                        ])
                    }
                    let leaders = rows.filter { $0["role"]?.stringValue == "leader" }.compactMap { $0["url"]?.stringValue }
                    if json {
                        let out = JSONValue.members([
                            "cluster": .string(cluster), "leaders": .array(leaders.map(JSONValue.string)), "members": .array(rows),
                        ])
                        Console.write(out.serialized() + [0x0A])
                        return
                    }
                    Console.out("cluster \(cluster): \(rows.count) members, leader \(leaders.isEmpty ? "none" : leaders.joined(separator: " and "))")
                    func cell(_ v: JSONValue?) -> String {
                        guard let v, !v.isNull else { return "-" }
                        return v.stringValue ?? String(decoding: v.serialized(), as: UTF8.self)
                    }
                    table(
                        ["URL", "ROLE", "EPOCH", "LAST_ID", "LAG_IDS", "LEASE_LEFT_S"],
                        rows.map { r in ["url", "role", "epoch", "last_id", "lag_ids", "lease_ttl_left_seconds"].map { cell(r[$0]) } })
                }
            }
        }
    }
}

/// `--etcd` and `--cluster` of the `cluster` commands, checked as `serve --cluster` checks them.
struct ClusterOptions: ParsableArguments {
    @Option(help: "etcd endpoints, comma-separated http:// URLs.") var etcd: String
    @Option(help: "The cluster's name.") var cluster: String

    func validate() throws { try Self.check(cluster: cluster, etcd: etcd) }

    static func check(cluster: String, etcd: String) throws {
        guard ClusterMember.validName(cluster) else { throw ValidationError("--cluster takes 1-64 letters, digits, '.', '_' or '-', not \"\(cluster)\"") }
        do { _ = try EtcdClient.endpoints(etcd) } catch { throw ValidationError("\(error)") }
    }
}
