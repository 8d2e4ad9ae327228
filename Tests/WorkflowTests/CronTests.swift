import Foundation
import Testing
@testable import Workflow

/// Cron expressions: fields, ranges, steps, lists, names, the day-of-month/day-of-week rule, time
/// zones with their daylight-saving jumps, and errors that name the field and its column.
struct CronTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    static func ticks(_ expression: String, after start: String, _ n: Int, in zone: TimeZone = utc) throws -> [String] {
        let cron = try Cron(expression)
        var out: [String] = []
        var t = date(start)
        let f = ISO8601DateFormatter()
        f.timeZone = zone
        for _ in 0..<n {
            guard let next = cron.next(after: t, in: zone) else { break }
            out.append(f.string(from: next))
            t = next
        }
        return out
    }

    @Test func fieldsRangesStepsAndLists() throws {
        #expect(try Self.ticks("*/15 * * * *", after: "2026-03-01T10:07:00Z", 3) == ["2026-03-01T10:15:00Z", "2026-03-01T10:30:00Z", "2026-03-01T10:45:00Z"])
        #expect(try Self.ticks("0 9-17/4 * * *", after: "2026-03-01T10:00:00Z", 3) == ["2026-03-01T13:00:00Z", "2026-03-01T17:00:00Z", "2026-03-02T09:00:00Z"])
        #expect(try Self.ticks("5,10 0 1 jan,JUL *", after: "2026-03-01T00:00:00Z", 3) == ["2026-07-01T00:05:00Z", "2026-07-01T00:10:00Z", "2027-01-01T00:05:00Z"])
        #expect(try Self.ticks("*/20 * * * * *", after: "2026-03-01T10:00:00Z", 3) == ["2026-03-01T10:00:20Z", "2026-03-01T10:00:40Z", "2026-03-01T10:01:00Z"], "six fields: seconds first")
        #expect(try Self.ticks("30 23 28-31 2 *", after: "2027-01-01T00:00:00Z", 2) == ["2027-02-28T23:30:00Z", "2028-02-28T23:30:00Z"], "29 February only in leap years (2028)")
        #expect(try Self.ticks("0 12 * * 1-5/2", after: "2026-11-30T12:00:00Z", 3) == ["2026-12-02T12:00:00Z", "2026-12-04T12:00:00Z", "2026-12-07T12:00:00Z"], "Mon, Wed, Fri")
    }

    @Test func restrictingBothDayFieldsMatchesEither() throws {
        // The 1st of the month, and every Sunday (0 and 7 are both Sunday).
        #expect(try Self.ticks("0 0 1 * 7", after: "2026-11-28T00:00:00Z", 3) == ["2026-11-29T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-06T00:00:00Z"])
        #expect(try Self.ticks("0 0 * * sun", after: "2026-11-28T00:00:00Z", 1) == ["2026-11-29T00:00:00Z"])
    }

    @Test func aStepInADayFieldStillRestrictsTheDays() throws {
        #expect(try Self.ticks("0 0 */10 * *", after: "2026-03-01T00:00:00Z", 3) == ["2026-03-11T00:00:00Z", "2026-03-21T00:00:00Z", "2026-03-31T00:00:00Z"])
        // Every Monday that is also an odd day of the month (a `*` field: both must match).
        #expect(try Self.ticks("0 0 */2 * mon", after: "2026-11-01T00:00:00Z", 2) == ["2026-11-09T00:00:00Z", "2026-11-23T00:00:00Z"])
    }

    @Test(.timeLimit(.minutes(1))) func anHourThatDoesNotMatchOnTheDayTheClocksGoBack() throws {
        let paris = TimeZone(identifier: "Europe/Paris")!
        #expect(try Self.ticks("0 9 * * *", after: "2026-10-24T09:00:00Z", 2, in: paris) == ["2026-10-25T09:00:00+01:00", "2026-10-26T09:00:00+01:00"])
        // Every hour at :15 through the change: 02:15 once (its second pass does not fire).
        #expect(try Self.ticks("15 * * * *", after: "2026-10-24T23:20:00Z", 4, in: paris) == [
            "2026-10-25T02:15:00+02:00", "2026-10-25T03:15:00+01:00", "2026-10-25T04:15:00+01:00", "2026-10-25T05:15:00+01:00",
        ])
    }

    @Test func timeZonesAndDaylightSavingJumps() throws {
        let paris = TimeZone(identifier: "Europe/Paris")!
        #expect(try Self.ticks("0 9 * * *", after: "2026-06-01T00:00:00Z", 1) == ["2026-06-01T09:00:00Z"])
        #expect(try Self.ticks("0 9 * * *", after: "2026-06-01T00:00:00Z", 1, in: paris) == ["2026-06-01T09:00:00+02:00"])
        // 29 March 2026: 02:00 becomes 03:00 in Paris; 02:30 does not happen that day.
        #expect(try Self.ticks("30 2 * * *", after: "2026-03-28T12:00:00Z", 2, in: paris) == ["2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"])
        // 25 October 2026: 03:00 goes back to 02:00; 02:30 happens twice and fires once.
        #expect(try Self.ticks("30 2 * * *", after: "2026-10-24T12:00:00Z", 2, in: paris) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"])
    }

    @Test func badExpressionsNameTheFieldAndItsColumn() {
        func error(_ text: String) -> Cron.ParseError? {
            do {
                _ = try Cron(text)
                return nil
            } catch { return error }
        }
        #expect(error("* * * *")?.message.contains("5 fields") == true)
        #expect(error("0 24 * * *") == Cron.ParseError(column: 3, message: "hour \"24\": 24 is outside 0-23"))
        #expect(error("*/0 * * * *")?.column == 1)
        #expect(error("0 0 * foo *") == Cron.ParseError(column: 7, message: "month \"foo\": not a number or a name (jan, feb, mar, apr, may, jun, jul, aug, sep, oct, nov, dec)"))
        #expect(error("0 0 5-1 * *")?.message == "day-of-month \"5-1\": the range runs backwards")
        #expect(error("0 0 31 4,6 *")?.message == "day-of-month \"31\" never occurs in month \"4,6\"")
        #expect(error("0 0 31 4,6 mon") == nil, "a weekday can still match")
    }

    @Test func aScheduleIsPartOfTheDefinition() throws {
        let definition = try DefinitionParser.parse("""
            name: nightly
            inputs: {target: {type: string}}
            schedule: {cron: "0 3 * * *", timezone: Europe/Paris, overlap: queue, catch_up: last, inputs: {target: all}}
            tasks:
              - {id: t, kind: swift, function: noop}
            """)
        let schedule = try #require(definition.schedule)
        #expect(schedule.cron.text == "0 3 * * *" && schedule.timezoneName == "Europe/Paris" && schedule.overlap == .queue && schedule.catchUp == .last)
        #expect(schedule.inputs == ["target": .text("all")])
        #expect(throws: DefinitionError.self) {
            try DefinitionParser.parse("name: n\ninputs: {target: {type: string}}\nschedule: {cron: \"0 3 * * *\"}\ntasks:\n  - {id: t, kind: swift, function: noop}\n")
        }
    }
}
