import Testing
import BanyanClient

struct DurationParseTests {
    @Test func operatorDurationsParse() {
        #expect(Duration.parse("90s") == .seconds(90))
        #expect(Duration.parse("1h30m") == .seconds(5_400))
        #expect(Duration.parse("7d") == .seconds(7 * 86_400))
        #expect(Duration.parse("2w") == .seconds(14 * 86_400))
        #expect(Duration.parse("250ms") == .milliseconds(250))
        for bad in ["", "10", "s", "1x", "1h 30m", "-5s", "1.5h", "999999999999999d", "101y", String(repeating: "1s", count: 40)] {
            #expect(Duration.parse(bad) == nil, "\(bad)")
        }
        #expect(Duration.parse("36600d") == .seconds(36_600 * 86_400))
        #expect(Duration.parse("36601d") == nil, "more than 100 years")
    }
}
