/// Durations in requests, flags and workflow definitions: one syntax for all of them.
extension Duration {
    /// A duration as operators write one: one or more `<integer><unit>` with units `ms`, `s`,
    /// `m`, `h`, `d` and `w`, e.g. `90s`, `6h`, `1h30m`, `7d`. Nil for anything else, and for
    /// more than 100 years.
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)]
        var rest = Substring(text)
        var total: Int64 = 0
        guard !rest.isEmpty, rest.utf8.count <= 64 else { return nil }
        while !rest.isEmpty {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix(while: { $0.isASCII && $0.isLetter })
            guard let scale = units.first(where: { $0.0 == unit })?.1 else { return nil }
            rest = rest.dropFirst(unit.count)
            let (product, overflow) = value.multipliedReportingOverflow(by: scale)
            let limit: Int64 = 100 * 366 * 86_400_000
            guard !overflow, product <= limit - total else { return nil }
            total += product
        }
        return .milliseconds(total)
    }
}
