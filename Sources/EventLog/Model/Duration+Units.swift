extension Duration {
    /// Seconds as a `Double` (status fields, metrics, condition-variable timeouts).
    public var inSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// Whole milliseconds, rounded down (error messages that name a configured bound).
    public var inMilliseconds: Int64 {
        let (s, atto) = components
        return s * 1_000 + atto / 1_000_000_000_000_000
    }
}
