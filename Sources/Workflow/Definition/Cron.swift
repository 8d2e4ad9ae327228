import Foundation

/// A cron expression (docs/WORKFLOWS.md, "Schedules"): the standard five fields, `minute hour
/// day-of-month month day-of-week`, or six with seconds first. Each field is `*`, a number, a
/// range `a-b`, a step `*/n` or `a-b/n`, or a list of those separated by commas; months and
/// weekdays also take their English three-letter names, and Sunday is 0 or 7. When neither the
/// day of the month nor the day of the week starts with `*`, a day matching either fires;
/// otherwise a day must match both (as in Vixie cron: `0 0 */2 * mon` is every other day that is
/// a Monday). Times are in the schedule's time zone: a time in the hour the clocks skip
/// does not fire that day, and one in the hour they repeat fires once.
public struct Cron: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    let seconds: Set<Int>
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>
    /// Whether the day-of-month and day-of-week fields start with `*` (then a day must match
    /// both, as in Vixie cron; otherwise either).
    let daysStar: Bool
    let weekdaysStar: Bool

    public var description: String { text }

    /// Why an expression is not one, and where.
    public struct ParseError: Error, Sendable, CustomStringConvertible, Hashable {
        /// The 1-based column of the field at fault in the expression.
        public var column: Int
        public var message: String
        public var description: String { "column \(column): \(message)" }
    }

    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(_ text: String) throws(ParseError) {
        self.text = text
        // Fields and their columns.
        var fields: [(text: Substring, column: Int)] = []
        var i = text.startIndex
        var column = 1
        while i < text.endIndex {
            if text[i] == " " || text[i] == "\t" {
                i = text.index(after: i)
                column += 1
                continue
            }
            let start = i
            let startColumn = column
            while i < text.endIndex, text[i] != " ", text[i] != "\t" {
                i = text.index(after: i)
                column += 1
            }
            fields.append((text[start..<i], startColumn))
        }
        guard fields.count == 5 || fields.count == 6 else {
            throw ParseError(column: 1, message: "a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), not \(fields.count)")
        }
        if fields.count == 5 { fields.insert(("0", 0), at: 0) }
        func parse(_ f: (text: Substring, column: Int), _ name: String, _ range: ClosedRange<Int>, names: [String] = [], nameBase: Int = 0) throws(ParseError) -> Set<Int> {
            var values: Set<Int> = []
            for part in f.text.split(separator: ",", omittingEmptySubsequences: false) {
                func fail(_ why: String) -> ParseError { ParseError(column: max(1, f.column), message: "\(name) \"\(part)\": \(why)") }
                let pieces = part.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
                var step = 1
                if pieces.count == 2 {
                    guard let n = Int(pieces[1]), n >= 1, n <= range.upperBound else { throw fail("the step must be a number from 1 to \(range.upperBound)") }
                    step = n
                }
                func value(_ s: Substring) throws(ParseError) -> Int {
                    if let n = Int(s) {
                        guard range.contains(n) else { throw fail("\(n) is outside \(range.lowerBound)-\(range.upperBound)") }
                        return n
                    }
                    if let k = names.firstIndex(of: s.lowercased()) { return k + nameBase }
                    throw fail(names.isEmpty ? "not a number" : "not a number or a name (\(names.joined(separator: ", ")))")
                }
                var low = range.lowerBound
                var high = range.upperBound
                let base = pieces[0]
                if base == "*" {
                } else if let dash = base.firstIndex(of: "-") {
                    low = try value(base[..<dash])
                    high = try value(base[base.index(after: dash)...])
                    guard low <= high else { throw fail("the range runs backwards") }
                } else {
                    low = try value(base)
                    // `5/15`: from 5 to the end, every 15.
                    if pieces.count == 1 { high = low }
                }
                values.formUnion(stride(from: low, through: high, by: step))
            }
            return values
        }
        seconds = try parse(fields[0], "seconds", 0...59)
        minutes = try parse(fields[1], "minute", 0...59)
        hours = try parse(fields[2], "hour", 0...23)
        days = try parse(fields[3], "day-of-month", 1...31)
        months = try parse(fields[4], "month", 1...12, names: Self.monthNames, nameBase: 1)
        let weekdaySet = try parse(fields[5], "day-of-week", 0...7, names: Self.dayNames)
        weekdays = Set(weekdaySet.map { $0 % 7 })
        daysStar = fields[3].text.hasPrefix("*")
        weekdaysStar = fields[5].text.hasPrefix("*")
        // A calendar that never has the day (30 February) never fires: refused here.
        if !months.contains(where: { m in days.contains { $0 <= Self.daysIn(month: m) } }), weekdaysStar {
            throw ParseError(column: max(1, fields[3].column), message: "day-of-month \"\(fields[3].text)\" never occurs in month \"\(fields[4].text)\"")
        }
    }

    /// Bounds one search (a day takes at most about 150 steps, a skipped day or month one).
    static let stepsMax = 1_000_000
    static let searchYears = 8

    static func daysIn(month: Int) -> Int { [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] }

    func dayMatches(day: Int, weekday: Int) -> Bool {
        daysStar || weekdaysStar ? days.contains(day) && weekdays.contains(weekday) : days.contains(day) || weekdays.contains(weekday)
    }

    /// The first time after `date` (strictly) that matches, in `zone`; nil when none comes within
    /// `searchYears` (an expression that can only match on rare days, like 29 February on a
    /// Monday, may take years).
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let start = date.addingTimeInterval(1).timeIntervalSince1970.rounded(.down)
        var t = Date(timeIntervalSince1970: start)
        let limit = date.addingTimeInterval(Double(Self.searchYears) * 366 * 86_400)
        // Each step moves to the next candidate of the coarsest field that does not match; a
        // day's worth of hours, minutes and seconds takes at most 24 + 60 + 60 steps. Steps
        // within a day are in absolute time (an hour on the clock may repeat), and every step
        // moves forward.
        var steps = 0
        while t <= limit, steps < Self.stepsMax {
            steps += 1
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: t)
            guard let year = c.year, let month = c.month, let day = c.day, let hour = c.hour, let minute = c.minute, let second = c.second, let weekday = c.weekday else { return nil }
            if !months.contains(month) {
                t = calendar.date(from: DateComponents(year: month == 12 ? year + 1 : year, month: month == 12 ? 1 : month + 1, day: 1)) ?? limit.addingTimeInterval(1)
                continue
            }
            if !dayMatches(day: day, weekday: weekday - 1) {
                t = calendar.startOfDay(for: calendar.date(byAdding: .day, value: 1, to: t) ?? limit.addingTimeInterval(1))
                continue
            }
            if !hours.contains(hour) {
                t = t.addingTimeInterval(Double(3_600 - minute * 60 - second))
                continue
            }
            if !minutes.contains(minute) {
                t = t.addingTimeInterval(Double(60 - second))
                continue
            }
            if !seconds.contains(second) {
                t = t.addingTimeInterval(1)
                continue
            }
            // The second pass through an hour the clocks turned back: it fired the first time.
            if calendar.component(.hour, from: t.addingTimeInterval(-3_600)) == hour {
                t = t.addingTimeInterval(1)
                continue
            }
            return t
        }
        return nil
    }
}
