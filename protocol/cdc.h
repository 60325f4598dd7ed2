/* SPDX-License-Identifier: MIT */
/*
 * Content-defined chunking. A file is cut where a rolling gear hash of the
 * last 64 bytes matches a mask, so the cut points move with the content: an
 * insertion or a grown header disturbs the chunks around it and the rest keep
 * their ids, between revisions and between related models.
 *
 * The cut rule (FastCDC-style normalized chunking), for a chunk of length L
 * after appending one byte b to the hash h = (h << 1) + gear[b] (mod 2^64):
 *   - no cut while L < min_size;
 *   - for min_size <= L <= avg_size, cut if the top log2(avg)+2 bits of h
 *     are zero (a stricter test, so short chunks are rare);
 *   - for avg_size < L < max_size, cut if the top log2(avg)-2 bits are zero
 *     (a looser one, so long chunks are rare);
 *   - cut at L == max_size regardless.
 * Bit 63 of h depends on exactly the last 64 bytes and nothing older, so the
 * scanner need not look at the first min_size-64 bytes of a chunk at all.
 * The gear table is 256 outputs of splitmix64 seeded with
 * SHOAL_CDC_GEAR_SEED: identical on every platform and every run, so
 * boundaries (and hence chunk ids) are too.
 *
 * Two layers: shoal_cdc_scan finds boundaries only (a value type on caller
 * storage); shoal_chunker also hashes each chunk and the whole file as the
 * bytes stream past, without copying them.
 */
#ifndef SHOAL_CDC_H
#define SHOAL_CDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"

#define SHOAL_CDC_MIN_DEFAULT (256u * 1024)
#define SHOAL_CDC_AVG_DEFAULT (1024u * 1024)
#define SHOAL_CDC_MAX_DEFAULT (4u * 1024 * 1024)
/* Largest max_size shoal_cdc_params_check accepts (64 MiB). */
#define SHOAL_CDC_MAX_LIMIT (64u * 1024 * 1024)
/* Smallest min_size: the rolling window, see above. */
#define SHOAL_CDC_MIN_LIMIT 64u
/* Seed of the splitmix64 stream that fills the gear table. Changing it
 * changes every chunk id ever published. */
#define SHOAL_CDC_GEAR_SEED UINT64_C(0x73686f616c636463) /* "shoalcdc" */

/* Chunking parameters; recorded in every manifest. */
struct shoal_cdc_params {
    uint32_t min_size, avg_size, max_size;
};

/* Fills |p| with 256 KiB / 1 MiB / 4 MiB. */
void shoal_cdc_params_default(struct shoal_cdc_params *p);

/* Checks 64 <= min < avg < max <= 64 MiB and that avg is a power of two.
 * Returns 0 or SHOAL_EBADMSG. Run it on parameters from a manifest or the
 * command line before anything else sees them. */
int shoal_cdc_params_check(const struct shoal_cdc_params *p);

/* Boundary scanner state. Plain value on caller storage: copy it, drop it,
 * nothing to free. Fields are private. */
struct shoal_cdc {
    uint64_t hash;        /* rolling gear hash */
    uint64_t mask_small;  /* test for min <= len <= avg */
    uint64_t mask_large;  /* test for avg < len < max */
    uint32_t min_size, avg_size, max_size;
    uint32_t len;         /* bytes of the current chunk consumed so far */
};

/* Starts a new stream with |p|, which must pass shoal_cdc_params_check (with
 * other values the chunk sizes still stay within max_size, but the cut rule
 * above no longer holds). Thread-safe: the shared gear table is built once. */
void shoal_cdc_init(struct shoal_cdc *c, const struct shoal_cdc_params *p);

/* Consumes bytes of |p| (|n| of them) up to and including the next boundary
 * and returns how many it consumed. Sets *cut to true if a chunk ends after
 * the last consumed byte (the scanner then starts a new chunk), false if all
 * |n| bytes were consumed without finding one. Feeding a stream in any split
 * gives the same boundaries. The end of the stream is a boundary too, but
 * only the caller knows where it is: after the last byte, take the pending
 * bytes as the final chunk and shoal_cdc_init again for the next stream. */
size_t shoal_cdc_scan(struct shoal_cdc *c, const uint8_t *p, size_t n, bool *cut);

/* Implementations of the boundary scan; all give identical boundaries.
 * AVX512 rolls eight stretches of the input at once (see cdc.c) and is used
 * for long stretches when the average chunk size is at least 32 KiB. */
enum shoal_cdc_impl {
    SHOAL_CDC_AUTO = 0,     /* AVX512 when the CPU has it, else SCALAR */
    SHOAL_CDC_SCALAR = 1,
    SHOAL_CDC_AVX512 = 2,
};

/* Chooses the scan implementation for all later shoal_cdc_scan calls in the
 * process. Without a call it is AUTO, except that the environment variable
 * SHOAL_CDC=scalar forces SCALAR. Meant for startup, tests and benchmarks.
 * Returns 0, -ENOTSUP if |impl| is AVX512 and this CPU or build cannot run
 * it, or -EINVAL for an unknown value. */
int shoal_cdc_select(enum shoal_cdc_impl impl);

/* The implementation shoal_cdc_scan currently uses: SCALAR or AVX512. */
enum shoal_cdc_impl shoal_cdc_impl(void);

/* Streaming chunker: boundaries, chunk ids, file sha256 and size in one pass.
 *
 * Called once per chunk, in file order, with the chunk's offset in the file,
 * its length (1..max_size) and its id. A nonzero return aborts the feed or
 * finish call, which returns that value. */
typedef int (*shoal_chunk_cb)(void *user, uint64_t offset, uint32_t len,
                              const uint8_t id[SHOAL_HASH_LEN]);

struct shoal_chunker;

/* Flags for shoal_chunker_new_flags. */
enum {
    /* Skip the whole-file SHA-256 (for callers that already know or do not
     * need it); shoal_chunker_finish then leaves |sha256| untouched. */
    SHOAL_CHUNKER_NO_SHA256 = 1u << 0,
};

/* Creates a chunker for |p|. Writes *out only on success. Returns 0,
 * SHOAL_EBADMSG if |p| fails shoal_cdc_params_check, -1 if libsodium could
 * not be initialized, or -ENOMEM. Free with shoal_chunker_free. */
int shoal_chunker_new(struct shoal_chunker **out, const struct shoal_cdc_params *p);
/* The same with SHOAL_CHUNKER_* |flags|; unknown flags give SHOAL_EBADMSG. */
int shoal_chunker_new_flags(struct shoal_chunker **out,
                            const struct shoal_cdc_params *p, unsigned flags);

/* Feeds the next |len| bytes of the file (|data| may be NULL if |len| is 0)
 * and calls |cb| for every chunk they complete. The bytes are hashed in
 * place and not kept: |data| need only live for this call. Returns 0 or the
 * callback's nonzero value; after an abort the file's state is lost, so call
 * shoal_chunker_reset before starting over. */
int shoal_chunker_feed(struct shoal_chunker *ch, const void *data, size_t len,
                       shoal_chunk_cb cb, void *user);

/* Ends the file: calls |cb| for the final chunk (none for an empty file),
 * writes the file's SHA-256 to |sha256| and its size to *size (either may be
 * NULL), and resets the chunker for the next file. Returns 0 or the
 * callback's nonzero value (the chunker is reset in both cases, and the
 * outputs are written only on success). */
int shoal_chunker_finish(struct shoal_chunker *ch, shoal_chunk_cb cb, void *user,
                         uint8_t sha256[SHOAL_HASH_LEN], uint64_t *size);

/* Drops any partial file and starts over with the same parameters. */
void shoal_chunker_reset(struct shoal_chunker *ch);

/* Frees |ch|; NULL is fine. */
void shoal_chunker_free(struct shoal_chunker *ch);

#endif
