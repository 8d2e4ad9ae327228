import EventLog
import Foundation

/// `banyan-server.json` in the data directory while `banyan serve` has it open: the server's pid
/// and a URL that reaches it from this machine. It lets a command given the data directory (a
/// snapshot) ask the running server instead of failing on RocksDB's lock. Written once the server
/// listens, removed when it stops; one a crash left behind is ignored once its pid is gone.
public enum ServerMark {
    public static let fileName = "banyan-server.json"

    /// Writes the mark (best effort: a server that cannot write it still serves).
    public static func write(dataDir: String, host: String, port: Int) {
        let reachable = ["0.0.0.0", "::", ""].contains(host) ? "127.0.0.1" : host
        let url = reachable.contains(":") ? "http://[\(reachable)]:\(port)" : "http://\(reachable):\(port)"
        let body = JSONValue.members(["pid": .int(Int(getpid())), "url": .string(url)]).serialized()
        _ = FileManager.default.createFile(atPath: path(dataDir), contents: Data(body))
    }

    public static func remove(dataDir: String) {
        try? FileManager.default.removeItem(atPath: path(dataDir))
    }

    /// The URL of the server that has `dataDir` open, nil when none does.
    public static func running(dataDir: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path(dataDir)),
            let value = try? JSONParser.parse(Array(data)),
            let pid = value["pid"]?.uint64Value, pid > 0, pid <= UInt64(Int32.max),
            let url = value["url"]?.stringValue
        else { return nil }
        // Signal 0 only asks whether the process exists.
        guard kill(pid_t(pid), 0) == 0 || errno == EPERM else { return nil }
        return url
    }

    private static func path(_ dataDir: String) -> String {
        URL(fileURLWithPath: dataDir).appendingPathComponent(fileName).path
    }
}
