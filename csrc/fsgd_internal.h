/* Private helpers shared by the C files of the core (not part of the API). */
#ifndef FSGD_INTERNAL_H
#define FSGD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FSGD_X86 1
#else
#define FSGD_X86 0
#endif

/* Loops that call exp run in an AVX2 clone where the CPU has it (ELF only). */
#if FSGD_X86 && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define FSGD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FSGD_CLONES
#endif

/* A 64-byte aligned scratch buffer owned by the calling thread (grown, never
 * shrunk, freed when the thread exits). NULL when memory runs out. */
void *fsgd_workspace(size_t bytes);

/* Elementwise loops smaller than this run on one thread. */
#define FSGD_PAR_MIN 32768

/* Threads worth using for `work` items at `per_thread` items each at least. */
static inline int fsgd_threads_for(int nthreads, int64_t work, int64_t per_thread)
{
    if (nthreads < 2 || work < 2 * per_thread) return 1;
    const int64_t useful = work / per_thread;
    return useful < nthreads ? (int)useful : nthreads;
}

/* ---- dropout's counter-based generator --------------------------------------
 * A SplitMix64 finaliser keyed by (layer seed, step), then by the batch row,
 * then by the unit: each element's bits are a pure function of those four
 * numbers, so masks do not depend on threads, memory or earlier draws, and
 * a resumed run draws the same masks. The top 53 bits are compared with
 * (1 - rate) 2^53. */
#define FSGD_GOLDEN 0x9e3779b97f4a7c15ULL
static inline uint64_t fsgd_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z;
}
static inline uint64_t fsgd_drop_batch_key(uint64_t seed, uint64_t step)
{
    return fsgd_mix64(seed ^ fsgd_mix64((step + 1) * FSGD_GOLDEN));
}
static inline uint64_t fsgd_drop_row_key(uint64_t batch_key, int64_t row)
{
    return fsgd_mix64(batch_key + ((uint64_t)row + 1) * FSGD_GOLDEN);
}
static inline uint64_t fsgd_drop_bits(uint64_t row_key, int64_t unit)
{
    return fsgd_mix64(row_key ^ (((uint64_t)unit + 1) * FSGD_GOLDEN)) >> 11;
}
/* kept when fsgd_drop_bits(...) < this; rate in [0, 1) */
static inline uint64_t fsgd_drop_threshold(double rate)
{
    return (uint64_t)((1.0 - rate) * 9007199254740992.0); /* 2^53 */
}

/* name##_##SFX inside the per-dtype templates */
#define FSGD_CAT_(a, b) a##_##b
#define FSGD_CAT(a, b) FSGD_CAT_(a, b)

#endif
