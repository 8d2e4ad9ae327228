import Foundation

extension Date {
    /// RFC 3339 in UTC, to the second (`2026-11-30T05:00:00Z`), or with milliseconds: the one
    /// format of every time Banyan writes as text (snapshot manifests, maintenance jobs).
    public func rfc3339(milliseconds: Bool = false) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = milliseconds ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: self)
    }
}
