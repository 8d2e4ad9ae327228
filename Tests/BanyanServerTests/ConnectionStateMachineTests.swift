@testable import BanyanServer
import Testing

/// Which timeout applies when, with time moved by hand (instants are built, never waited for).
struct ConnectionStateMachineTests {
    let timeouts = ConnectionTimeouts(headerRead: .seconds(10), bodyRead: .seconds(60), idle: .seconds(30))
    let t0 = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { t0.advanced(by: .seconds(seconds)) }

    @Test func aSilentConnectionIsClosedAtTheIdleTimeout() {
        let m = ConnectionStateMachine<ContinuousClock>(timeouts: timeouts, now: t0)
        #expect(m.deadline == at(30))
        #expect(m.expired(now: at(29)) == nil)
        #expect(m.expired(now: at(30)) == "idle timeout")
        #expect(m.isIdle)
    }

    @Test func aHeadThatNeverEndsIsClosedAtTheHeaderTimeoutHoweverSlowlyItDrips() {
        var m = ConnectionStateMachine<ContinuousClock>(timeouts: timeouts, now: t0)
        m.bytesReceived(now: at(5))
        #expect(m.deadline == at(15))
        // More bytes of the same head do not move the deadline (a slowloris drips one a second).
        for s in 6..<15 { m.bytesReceived(now: at(s)) }
        #expect(m.expired(now: at(15)) == "header read timeout")
        #expect(m.isIdle, "a connection without a whole request head may be evicted")
    }

    @Test func aBodyMustArriveWholeWithinTheBodyTimeout() {
        var m = ConnectionStateMachine<ContinuousClock>(timeouts: timeouts, now: t0)
        m.bytesReceived(now: at(1))
        m.headReceived(now: at(2))
        #expect(!m.isIdle)
        for s in 3..<62 { m.bytesReceived(now: at(s)) }
        #expect(m.deadline == at(62))
        #expect(m.expired(now: at(62)) == "body read timeout")
    }

    @Test func noTimeoutWhileAResponseIsProducedThenIdleAgain() {
        var m = ConnectionStateMachine<ContinuousClock>(timeouts: timeouts, now: t0)
        m.bytesReceived(now: at(1))
        m.headReceived(now: at(1))
        m.endReceived()
        #expect(m.deadline == nil, "a long query or an SSE stream is not cut by a connection timeout")
        #expect(m.expired(now: at(100_000)) == nil)
        #expect(!m.isIdle)
        m.responseEnded(now: at(500))
        #expect(m.deadline == at(530))
        #expect(m.isIdle)
        // The next request's first byte switches to the header timeout.
        m.bytesReceived(now: at(510))
        #expect(m.deadline == at(520))
    }

    @Test func pipelinedRequestsKeepTheConnectionBusyUntilTheLastResponse() {
        var m = ConnectionStateMachine<ContinuousClock>(timeouts: timeouts, now: t0)
        for _ in 0..<3 {
            m.headReceived(now: at(1))
            m.endReceived()
        }
        m.responseEnded(now: at(2))
        m.responseEnded(now: at(3))
        #expect(m.deadline == nil && !m.isIdle)
        m.responseEnded(now: at(4))
        #expect(m.deadline == at(34) && m.isIdle)
    }
}

/// The `Date` header of answers written on the event loop (`EventLoopAnswer`): RFC 9110's IMF-fixdate,
/// as Hummingbird writes it for every other answer.
struct HTTPDateTests {
    @Test func formatsIMFFixdate() {
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(1_796_140_405) == "Tue, 01 Dec 2026 15:53:25 GMT")
        #expect(HTTPDate.format(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
    }
}
