import EventLog
import Foundation

/// Where the next page of a `POST /v1/query` answer starts: the snapshot the first page fixed and
/// how many results came before. Opaque to clients and checked when it comes back, so a cursor
/// that was forged, damaged, or taken from another query is refused instead of silently paging
/// something else.
///
/// Wire form: base64url without padding of 25 bytes: version (1, = 1), snapshot (8, big-endian),
/// offset (8, big-endian), CRC-32C of the query text (4), CRC-32C of the 21 bytes before it (4).
/// The checksums catch mistakes, not attackers: anyone can build a valid cursor for their own
/// query, which only lets them page their own answer from another position.
struct QueryCursor: Equatable {
    var snapshot: EventID
    var offset: Int

    static let version: UInt8 = 1
    static let byteCount = 25

    func encoded(query: String) -> String {
        var w = ByteWriter(capacity: Self.byteCount)
        w.bytes.append(Self.version)
        w.putBE64(snapshot)
        w.putBE64(UInt64(offset))
        w.putBE32(CRC32C.checksum(Array(query.utf8)))
        w.putBE32(CRC32C.checksum(w.bytes))
        return Data(w.bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The cursor `raw` stands for, if this server could have issued it for `query`: intact, of
    /// this query, with a snapshot no later than `lastID` and a positive offset.
    static func decode(_ raw: String, query: String, lastID: EventID) throws(APIError) -> QueryCursor {
        func refuse(_ why: String) -> APIError {
            APIError.invalid("cursor is not one this server returned for this query: \(why)", field: "cursor")
        }
        guard raw.utf8.count <= 64, raw.utf8.allSatisfy({ Self.alphabet.contains($0) }) else { throw refuse("not a cursor") }
        var text = raw.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.utf8.count % 4) % 4)
        guard let data = Data(base64Encoded: text), data.count == byteCount else { throw refuse("not a cursor") }
        var r = ByteReader([UInt8](data))
        let cursor: QueryCursor
        do {
            let v = try r.byte()
            guard v == version else { throw refuse("unknown cursor version \(v)") }
            let snapshot = try r.be64()
            let offset = try r.be64()
            let queryCRC = try r.be32()
            guard CRC32C.checksum(r.bytes[0..<r.offset]) == (try r.be32()) else { throw refuse("damaged") }
            guard queryCRC == CRC32C.checksum(Array(query.utf8)) else { throw refuse("it belongs to another query") }
            cursor = QueryCursor(snapshot: snapshot, offset: Int(clamping: offset))
        } catch let error as APIError {
            throw error
        } catch {
            throw refuse("not a cursor")
        }
        guard cursor.snapshot >= 1, cursor.snapshot <= lastID else { throw refuse("its snapshot \(cursor.snapshot) is not in this log") }
        guard cursor.offset >= 1 else { throw refuse("offset \(cursor.offset)") }
        return cursor
    }

    private static let alphabet: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8))
}
