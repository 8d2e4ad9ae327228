import Foundation

/// A bloom filter over idempotency keys, so the sequencer can tell a key never written from one
/// that may exist without looking it up (docs/ARCHITECTURE.md, the write path). It may answer
/// "maybe" for a key it never saw (about 1% of new keys per full layer); it never answers "no"
/// for a key it was given, which is all the dedupe needs: "maybe" falls back to the lookups.
///
/// Blocked (each key's bits in one 64-byte block, so a probe touches one block) and scalable:
/// when a layer holds its capacity a larger one is added (four times the last, or as large as
/// everything held so far), so it needs no rebuild as the store grows. Past `bytesMax` it gives
/// up (`isEnabled` false, its memory freed) and every answer is "maybe": the filter can make a
/// lookup unnecessary, never a decision wrong. Keys are their UTF-8 bytes, as in RocksDB.
struct KeyFilter {
    private struct Layer {
        /// `blocks` × 8 words.
        var words: [UInt64]
        var blockMask: UInt64
        var count = 0
        var capacity: Int
    }

    /// Bits per key at capacity: about 1% false positives with `probes` bits per key in a block.
    static let bitsPerKey = 10
    static let probes = 6
    static let layerKeysMin = 1 << 16
    private var layers: [Layer] = []
    /// May be raised (never lowered) while the filter runs.
    var bytesMax: Int
    private(set) var isEnabled: Bool

    /// Room for `expected` keys in its first layer; disabled from the start when `bytesMax` is 0
    /// or that layer alone would exceed it.
    init(expected: Int, bytesMax: Int) {
        self.bytesMax = bytesMax
        isEnabled = bytesMax > 0
        if isEnabled { addLayer(keys: max(expected, Self.layerKeysMin)) }
    }

    var bytes: Int { layers.reduce(0) { $0 + $1.words.count * 8 } }
    var count: Int { layers.reduce(0) { $0 + $1.count } }

    /// A layer of a power of two of 64-byte blocks with room for `keys`, or the largest that
    /// still fits in `bytesMax` if that is at least `layerKeysMin`'s; else the filter gives up.
    private mutating func addLayer(keys: Int) {
        let blocksLeft = max(0, bytesMax - bytes) / 64
        let wanted = min(max(keys, 1), Int.max / 1_024) * Self.bitsPerKey
        var blocks = 1
        while blocks * 512 < wanted && blocks * 2 <= blocksLeft { blocks <<= 1 }
        guard blocks <= blocksLeft, blocks * 512 >= Self.layerKeysMin * Self.bitsPerKey else {
            disable()
            return
        }
        layers.append(Layer(words: Array(repeating: 0, count: blocks * 8), blockMask: UInt64(blocks - 1), capacity: blocks * 512 / Self.bitsPerKey))
    }

    mutating func disable() {
        isEnabled = false
        layers = []
    }

    mutating func insert(_ key: String) { insert(hash: Self.hash(of: key)) }

    mutating func insert(_ key: UnsafeRawBufferPointer) { insert(hash: Self.hash(key)) }

    /// Inserts the key whose `hash(of:)` is `h`.
    mutating func insert(hash h: UInt64) {
        guard isEnabled else { return }
        if layers[layers.count - 1].count >= layers[layers.count - 1].capacity {
            // As large as everything held so far: after a scan of millions of keys, the next
            // layer is not a small one (each layer adds its own false positives).
            addLayer(keys: max(layers[layers.count - 1].capacity * 4, count))
            guard isEnabled else { return }
        }
        let last = layers.count - 1
        let base = Int(truncatingIfNeeded: h & layers[last].blockMask) << 3
        var bits = Self.mix(h)
        layers[last].words.withUnsafeMutableBufferPointer { words in
            for _ in 0..<Self.probes {
                let bit = Int(truncatingIfNeeded: bits & 511)
                words[base + bit >> 6] |= 1 << UInt64(bit & 63)
                bits >>= 9
            }
        }
        layers[last].count += 1
    }

    /// False only for a key never inserted.
    func mayContain(_ key: String) -> Bool { mayContain(hash: Self.hash(of: key)) }

    /// `mayContain` of the key whose `hash(of:)` is `h`.
    func mayContain(hash h: UInt64) -> Bool {
        guard isEnabled else { return true }
        let mixed = Self.mix(h)
        for layer in layers where layer.count > 0 {
            let base = Int(truncatingIfNeeded: h & layer.blockMask) << 3
            var bits = mixed
            var all = true
            layer.words.withUnsafeBufferPointer { words in
                for _ in 0..<Self.probes {
                    let bit = Int(truncatingIfNeeded: bits & 511)
                    if words[base + bit >> 6] & (1 << UInt64(bit & 63)) == 0 {
                        all = false
                        return
                    }
                    bits >>= 9
                }
            }
            if all { return true }
        }
        return false
    }

    /// Every key `other` holds is held here afterwards (or this filter gives up, if the two do
    /// not fit in `bytesMax` together).
    mutating func absorb(_ other: KeyFilter) {
        guard isEnabled else { return }
        guard other.isEnabled, bytes + other.bytes <= bytesMax else {
            disable()
            return
        }
        // Its layers go first: this filter's last layer is the one still filling.
        layers.insert(contentsOf: other.layers.filter { $0.count > 0 }, at: 0)
    }

    /// 64 bits of the key's bytes (splitmix64's finaliser over 8-byte words, from a seed drawn
    /// once per process): in memory only, so it may change from one run to the next. Seeded
    /// because `StagedKeys` probes by it too: keys made to collide would turn its probes into
    /// scans (in the filter they would only cost the lookups there were before it).
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = seed ^ UInt64(bytes.count)
        var i = 0
        while i + 8 <= bytes.count {
            h = mix(h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count {
            tail |= UInt64(bytes[i]) << shift
            shift += 8
            i += 1
        }
        return mix(h ^ tail)
    }

    /// Random per process; `BANYAN_KEY_HASH_SEED` sets it, so a test's run can be replayed.
    static let seed: UInt64 = ProcessInfo.processInfo.environment["BANYAN_KEY_HASH_SEED"].flatMap { UInt64($0) }
        ?? UInt64.random(in: .min ... .max)

    static func hash(of key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// An idempotency key compared as the `keys` family compares it: by its UTF-8 bytes. Swift's
/// `String` equality is canonical equivalence (NFC "é" equals NFD "e" + U+0301), under which the
/// staged-key tables, an import's batch or the in-memory storage would call two keys the same
/// that RocksDB stores apart.
struct KeyBytes: Hashable, Comparable {
    let key: String

    init(_ key: String) { self.key = key }

    static func == (a: KeyBytes, b: KeyBytes) -> Bool {
        a.key.utf8.count == b.key.utf8.count && compare(a, b) == 0
    }

    /// Swift's seeded hash of the bytes: keys are chosen by clients, and keys made to collide
    /// must not turn the sets and maps keyed by them into lists.
    func hash(into hasher: inout Hasher) {
        var key = key
        key.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// RocksDB's order of keys: bytewise, a prefix first.
    static func < (a: KeyBytes, b: KeyBytes) -> Bool {
        compare(a, b) < 0
    }

    /// Below, at or above zero as `a` comes before, with or after `b` in that order.
    private static func compare(_ a: KeyBytes, _ b: KeyBytes) -> Int {
        var (a, b) = (a.key, b.key)
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = min(x.count, y.count)
                let c = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
                return c != 0 ? Int(c) : x.count - y.count
            }
        }
    }

    /// Whether two optional keys are the same key.
    static func same(_ a: String?, _ b: String?) -> Bool {
        switch (a, b) {
        case (nil, nil): true
        case let (a?, b?): KeyBytes(a) == KeyBytes(b)
        default: false
        }
    }
}
