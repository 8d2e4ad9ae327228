#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <rocksdb/c.h>

// CRC-32C for Banyan's records, index blocks and segments, which the writer computes for every
// event it stages.
//
// RocksDB has one, rocksdb::crc32c::Extend(uint32_t, const char*, size_t), exported by librocksdb
// but not wrapped by the C API; it is declared here by its Itanium C++ ABI name. Debian builds
// RocksDB portably, so that one runs a table-driven loop (about 1 GB/s here). On x86-64 CPUs with
// SSE4.2 the crc32 instruction does the same work several times faster, so it is used when the
// CPU has it.
extern uint32_t _ZN7rocksdb6crc32c6ExtendEjPKcm(uint32_t crc, const char *buf, size_t size);

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static inline uint32_t banyan_crc32c_sse42(uint32_t crc, const char *buf, size_t size) {
    uint64_t c = ~crc;
    while (size >= 8) {
        uint64_t word;
        memcpy(&word, buf, 8);
        c = __builtin_ia32_crc32di(c, word);
        buf += 8;
        size -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (size > 0) {
        c32 = __builtin_ia32_crc32qi(c32, (unsigned char)*buf);
        buf++;
        size--;
    }
    return ~c32;
}
#endif

static inline uint32_t banyan_crc32c_extend(uint32_t crc, const char *buf, size_t size) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return banyan_crc32c_sse42(crc, buf, size);
#endif
    return _ZN7rocksdb6crc32c6ExtendEjPKcm(crc, buf, size);
}
