/// How long a connection may take over each part of its life before the server closes it, so that
/// a client that connects and then sends slowly or nothing at all (slowloris) cannot hold a
/// connection, a descriptor and, before authentication, any resources for ever.
public struct ConnectionTimeouts: Sendable, Hashable {
    /// From the first byte of a request to the end of its head (request line and headers).
    public var headerRead: Duration = .seconds(10)
    /// From the end of a request's head to the end of its body: the whole body, not the gap
    /// between two chunks, so a client dripping one byte at a time is closed too.
    public var bodyRead: Duration = .seconds(60)
    /// With no request in progress, how long a kept-alive connection may stay silent.
    public var idle: Duration = .seconds(60)

    public init() {}

    public init(headerRead: Duration, bodyRead: Duration, idle: Duration) {
        self.headerRead = headerRead
        self.bodyRead = bodyRead
        self.idle = idle
    }
}

/// Where one HTTP/1.1 connection is in its life, and so which timeout applies: a value type,
/// generic over its clock, that the channel handler feeds events and asks for a deadline.
///
/// While a response is being produced (a query running, an SSE stream open) no timeout applies:
/// those are bounded by their own budgets, and a stream by its client.
struct ConnectionStateMachine<C: Clock> where C.Duration == Duration {
    let timeouts: ConnectionTimeouts
    /// Requests whose head has arrived and whose response has not ended (pipelining: several).
    private(set) var requestsInFlight = 0
    /// When the head of the request whose body is being read arrived; nil when no body is being read.
    private(set) var bodySince: C.Instant?
    /// When the first byte of a request head arrived that has not ended yet.
    private(set) var headSince: C.Instant?
    /// When the connection last became idle (opened, or its last response ended).
    private(set) var idleSince: C.Instant

    init(timeouts: ConnectionTimeouts, now: C.Instant) {
        self.timeouts = timeouts
        idleSince = now
    }

    /// Whether the connection may be closed to make room for another: nothing of a request is
    /// in progress that the client is owed an answer for.
    var isIdle: Bool { requestsInFlight == 0 && bodySince == nil }

    /// Whether bytes arriving now start a request head (and so change the deadline).
    var bytesStartAHead: Bool { bodySince == nil && headSince == nil }

    mutating func bytesReceived(now: C.Instant) {
        if bytesStartAHead { headSince = now }
    }

    mutating func headReceived(now: C.Instant) {
        headSince = nil
        requestsInFlight += 1
        bodySince = now
    }

    mutating func endReceived() {
        bodySince = nil
    }

    mutating func responseEnded(now: C.Instant) {
        requestsInFlight = max(0, requestsInFlight - 1)
        if requestsInFlight == 0 { idleSince = now }
    }

    /// When the connection must be closed unless something happens first; nil while a response is produced.
    var deadline: C.Instant? {
        if let bodySince { return bodySince.advanced(by: timeouts.bodyRead) }
        if requestsInFlight > 0 { return nil }
        if let headSince { return headSince.advanced(by: timeouts.headerRead) }
        return idleSince.advanced(by: timeouts.idle)
    }

    /// Which timeout has expired at `now`, if any: the reason the connection is closed.
    func expired(now: C.Instant) -> String? {
        guard let deadline, now >= deadline else { return nil }
        if bodySince != nil { return "body read timeout" }
        if headSince != nil { return "header read timeout" }
        return "idle timeout"
    }
}
