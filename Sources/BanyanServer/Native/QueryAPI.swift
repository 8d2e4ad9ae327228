import EventLog
import Hummingbird
import LineageQuery

/// `POST /v1/query`: `{"query", "cursor"?, "page_size"?, "include"?, "budget"?}` →
/// `{"results", "next", "truncated", "stats"}` (docs/HTTP_API.md).
///
/// Paging: the first page fixes a snapshot (the last id then); every page takes the answer over
/// events up to that snapshot and returns the results after the cursor position, so following
/// `next` until it is null yields the whole answer exactly once however many events arrive.
/// An answer with more than one page is kept (`QueryAnswers`) so later pages do not run the
/// query again; one that is no longer kept is computed again over the same snapshot.
/// The cursor (`QueryCursor`) is opaque to clients and checked when it comes back.
///
/// One request's memory is bounded: the executor's by its node budget (ids, visited sets and
/// path trees are each at most a few bytes per budget unit, and a path in the answer costs its
/// length), the response's by `queryPageBytesMax`: a page ends early, with a cursor, once it
/// holds that many bytes or the time budget is spent (looked at every 64 results or 64 KiB),
/// after at least one result.
package struct QueryAPI: Sendable {
    let store: EventStore
    let config: ServerConfiguration
    let answers: QueryAnswers

    static let fields: Set<String> = ["query", "cursor", "page_size", "include", "budget"]
    static let budgetFields: Set<String> = ["nodes_max", "time_max_ms"]
    /// What `include` may add to the fields every query result has (id, key, type, time).
    static let includable: [String: EventJSON.Fields] = ["message": [.message, .compaction], "payload": [.payload, .compaction], "parents": .parents, "stream": .stream]
    static let resultFields: EventJSON.Fields = [.key, .type, .time]

    /// What one page request asks, whichever transport brought it (HTTP body, gRPC message).
    package struct Ask: Sendable {
        var text: String
        var pageSize: Int
        var budget: QueryBudget
        var include: EventJSON.Fields
        /// The `next` of the page before (nil: the first page).
        package var cursor: String?

        /// Checks each value against its range, naming the field as the HTTP body names it.
        /// Nil values take the defaults: 100 results a page, the server's budget.
        package init(text: String, pageSize: Int?, nodesMax: Int?, timeMaxMs: Int?, include: [String], cursor: String?, limits: Limits) throws {
            guard !text.isEmpty else { throw APIError.invalid("query is required", field: "query") }
            self.text = text
            self.pageSize = try Self.check(pageSize, field: "page_size", in: Self.pageSizes(limits)) ?? 100
            budget = QueryBudget(defaultOf: limits)
            if let n = try Self.check(nodesMax, field: "budget.nodes_max", in: Self.nodes(limits)) { budget.nodesMax = n }
            if let ms = try Self.check(timeMaxMs, field: "budget.time_max_ms", in: Self.milliseconds(limits)) { budget.timeMax = .milliseconds(ms) }
            self.include = QueryAPI.resultFields
            for name in include {
                guard let field = QueryAPI.includable[name] else {
                    throw APIError.invalid("include lists fields among \(QueryAPI.includable.keys.sorted())", field: "include")
                }
                self.include.insert(field)
            }
            self.cursor = cursor
        }

        static func pageSizes(_ limits: Limits) -> ClosedRange<Int> { 1...limits.readEventsMax }
        static func nodes(_ limits: Limits) -> ClosedRange<Int> { 1...limits.queryNodesMax }
        static func milliseconds(_ limits: Limits) -> ClosedRange<Int> { 1...max(1, Int(limits.queryTimeMax.inMilliseconds)) }

        private static func check(_ value: Int?, field: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let value else { return nil }
            guard range.contains(value) else { throw APIError.invalid("\(field) must be an integer in \(range.lowerBound)...\(range.upperBound)", field: field) }
            return value
        }
    }

    func run(_ request: Request) async throws -> Response {
        try RequestBody.requireJSON(request)
        let body = try await RequestBody.bytes(request, bytesMax: store.limits.queryBodyBytesMax)
        let object = try RequestBody.object(body, allowed: Self.fields, depthMax: 16)
        guard let text = try RequestBody.string(object, "query"), !text.isEmpty else {
            throw APIError.invalid("query is required", field: "query")
        }
        let limits = store.limits
        let pageSize = try RequestBody.integer(object, "page_size", field: "page_size", in: Ask.pageSizes(limits))
        var (nodesMax, timeMaxMs): (Int?, Int?) = (nil, nil)
        if let budget = object["budget"], !budget.isNull {
            guard let members = budget.objectValue else {
                throw APIError.invalid("budget must be an object with nodes_max and/or time_max_ms", field: "budget")
            }
            for member in members where !Self.budgetFields.contains(member.key) {
                throw APIError.invalid("unknown budget field \"\(member.key)\"; known: nodes_max, time_max_ms", field: "budget.\(member.key)")
            }
            nodesMax = try RequestBody.integer(budget, "nodes_max", field: "budget.nodes_max", in: Ask.nodes(limits))
            timeMaxMs = try RequestBody.integer(budget, "time_max_ms", field: "budget.time_max_ms", in: Ask.milliseconds(limits))
        }
        let include = try (object["include"]?.arrayValue ?? []).map { item in
            guard let name = item.stringValue else {
                throw APIError.invalid("include lists fields among \(Self.includable.keys.sorted())", field: "include")
            }
            return name
        }
        let ask = try Ask(
            text: text, pageSize: pageSize, nodesMax: nodesMax, timeMaxMs: timeMaxMs, include: include,
            cursor: try RequestBody.string(object, "cursor"), limits: limits)
        return JSONResponse.make(try await page(ask).body)
    }

    /// One page of the answer to `ask`: its body (`{"results"|"paths"|"count", "next",
    /// "truncated", "stats"}`, or `{"plan"}` for `explain`) and the cursor of the next page.
    package func page(_ ask: Ask) async throws -> (body: JSONWriter, next: String?) {
        let (text, budget) = (ask.text, ask.budget)
        let store = self.store
        let cursor = try ask.cursor.map { raw throws(APIError) in
            try QueryCursor.decode(raw, query: text, lastID: store.lastID)
        }
        let snapshot = cursor?.snapshot ?? store.lastID
        let deadline = ContinuousClock.now + budget.timeMax
        let plan: LogicalPlan
        let explain: Bool
        do {
            let analyzed = try Analyzer.analyze(text)
            plan = try Planner.plan(analyzed)
            explain = analyzed.statement.explain
        } catch {
            throw Self.render(error, text)
        }
        if explain {
            var w = JSONWriter()
            w.write(JSONValue.members(["plan": .string(plan.explained)]))
            return (w, nil)
        }
        let key = QueryAnswers.Key(text: text, snapshot: snapshot, budget: budget)
        // Read before the query runs: a rewrite while it runs makes the answer stale at once.
        let rewrites = store.rewriteCount
        let result: QueryResult
        let kept = cursor == nil ? nil : answers.answer(key, rewrites: rewrites)
        if let kept {
            result = kept
        } else {
            let outcome: Result<QueryResult, QueryError> = try await Blocking.runHeavy {
                do {
                    var executor = Executor(store: store, budget: budget, snapshot: snapshot)
                    return .success(try executor.run(plan))
                } catch let error as QueryError {
                    return .failure(error)
                }
            }
            switch outcome {
            case .success(let r): result = r
            case .failure(let error): throw Self.render(error, text)
            }
        }
        let page = Page(query: text, snapshot: snapshot, offset: cursor?.offset ?? 0, size: ask.pageSize, bytesMax: store.limits.queryPageBytesMax, deadline: deadline)
        let (body, next) = try await respond(result, page: page, include: ask.include)
        if kept == nil, next != nil {
            answers.keep(result, for: key, rewrites: rewrites)
        } else if kept != nil, next == nil {
            answers.forget(key)
        }
        return (body, next)
    }

    /// Which part of an answer one response carries.
    struct Page: Sendable {
        var query: String
        var snapshot: EventID
        var offset: Int
        var size: Int
        var bytesMax: Int
        var deadline: ContinuousClock.Instant
    }

    /// The page's body, and the next page's cursor (nil: this is the last).
    private func respond(_ result: QueryResult, page: Page, include: EventJSON.Fields) async throws -> (JSONWriter, String?) {
        let store = self.store
        return try await Blocking.run { () throws -> (JSONWriter, String?) in
            var w = JSONWriter(capacity: 4096)
            var next: String?
            switch result.answer {
            case .count(let n):
                w.writeRaw("{\"count\":")
                w.writeInt(Int64(n))
            case .paths(let paths):
                w.writeRaw("{\"paths\":[")
                next = try Self.writePage(of: paths.count, page, into: &w) { i, w in
                    w.writeIDs(paths[i])
                    return true
                }
                w.writeRaw("]")
            case .ids(let ids):
                w.writeRaw("{\"results\":[")
                // One iterator over the page's range: answers are mostly ascending and dense.
                let end = min(ids.count, page.offset + page.size)
                let slice = page.offset < end ? ids[page.offset..<end] : []
                next = try store.withReader(from: slice.min() ?? 1, through: slice.max() ?? 0) { reader in
                    // The reader covers this page's ids only: a missing event must not carry
                    // the page past them.
                    try Self.writePage(of: ids.count, upTo: end, page, into: &w) { i, w in
                        guard let record = try reader.record(ids[i]) else { return false }
                        EventJSON.write(record, fields: include, into: &w)
                        return true
                    }
                }
                w.writeRaw("]")
            }
            w.writeRaw(",\"next\":")
            if let next { w.writeString(next) } else { w.writeNull() }
            w.writeRaw(",\"truncated\":")
            w.writeBool(result.truncated)
            w.writeRaw(",\"stats\":")
            w.write(.members([
                "visited": .int(result.visited), "snapshot": .int(page.snapshot), "reason": result.reason.map(JSONValue.string) ?? .null,
                "compacted": .int(result.compacted),
                "pruned_below": result.prunedBelow.map { .int(Int($0)) } ?? .null,
                "horizon": Self.horizon(result),
            ]))
            w.writeRaw("}")
            return (w, next)
        }
    }

    /// What limits the answer's reach, in words: compacted content a condition met, and a pruned prefix.
    static func horizon(_ result: QueryResult) -> JSONValue {
        var parts: [String] = []
        if result.compacted > 0 {
            parts.append("\(result.compacted) compacted events met a condition on message or payload; their content was dropped by compaction, so the condition could not match them")
        }
        if let first = result.prunedBelow {
            parts.append("events below \(first) were pruned from this store: walks and scans stop there")
        }
        return parts.isEmpty ? .null : .string(parts.joined(separator: "; "))
    }

    /// Bytes a page writes between two reads of the clock, at most (and 64 positions).
    static let clockBytes = 64 << 10

    /// Writes results `page.offset ..< count` separated by commas until the page holds
    /// `page.size` results or `page.bytesMax` bytes or the deadline has passed at one of the
    /// clock's reads (every 64 positions or 64 KiB; at least one result is always written, so
    /// paging always moves on); returns the next page's cursor, nil at the end.
    private static func writePage(
        of count: Int, upTo stop: Int? = nil, _ page: Page, into w: inout JSONWriter, _ item: (Int, inout JSONWriter) throws -> Bool
    ) throws -> String? {
        guard page.offset <= count else {
            throw APIError.invalid("cursor is past the end of the answer (\(count) results)", field: "cursor")
        }
        let start = w.bytes.count
        var written = 0
        var position = page.offset
        var clockReadAt = start
        let stop = min(count, stop ?? count)
        while position < stop, written < page.size {
            if written > 0 {
                if w.bytes.count - start >= page.bytesMax { break }
                // The clock every 64 positions or 64 KiB written, whichever comes first: read
                // per result it was 2% of a 10,000-result page.
                if (position - page.offset) & 63 == 0 || w.bytes.count - clockReadAt >= Self.clockBytes {
                    clockReadAt = w.bytes.count
                    if ContinuousClock.now > page.deadline { break }
                }
            }
            let mark = w.bytes.count
            if written > 0 { w.writeRaw(",") }
            if try item(position, &w) { written += 1 } else { w.bytes.removeSubrange(mark...) }
            position += 1
        }
        return position < count ? QueryCursor(snapshot: page.snapshot, offset: position).encoded(query: page.query) : nil
    }

    /// 400 with `{"error","detail","line","column"}`; detail is the rendered text with the caret.
    static func render(_ error: QueryError, _ text: String) -> APIError {
        let (line, column) = error.location(in: text)
        var e = APIError(.badRequest, error.code == .limit ? "query too large" : "invalid query", detail: error.rendered(in: text))
        e.field = "query"
        e.line = line
        e.column = column
        return e
    }
}
