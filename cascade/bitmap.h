/* Bitmaps of blocks: bit i lives in byte i/8, least significant bit first
 * (the layout of the held record on disk and of cascade_store_held_map). */
#ifndef CASCADE_BITMAP_H
#define CASCADE_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes needed for n bits. */
static inline size_t bitmap_bytes(uint64_t n)
{
    return (size_t)((n + 7) / 8);
}

static inline bool bitmap_get(const uint8_t *bits, uint64_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

static inline void bitmap_set(uint8_t *bits, uint64_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

static inline void bitmap_clear(uint8_t *bits, uint64_t i)
{
    bits[i / 8] &= (uint8_t)~(1u << (i % 8));
}

/* Number of set bits in the first len bytes. */
static inline uint64_t bitmap_count(const uint8_t *bits, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (uint64_t)__builtin_popcount(bits[i]);
    return n;
}

/* Set bits among bits [first, end). */
static inline uint64_t bitmap_count_range(const uint8_t *bits, uint64_t first, uint64_t end)
{
    uint64_t n = 0;
    for (uint64_t i = first; i < end; i++)
        n += bitmap_get(bits, i);
    return n;
}

#endif
