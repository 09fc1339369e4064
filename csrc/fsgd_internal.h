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

/* name##_##SFX inside the per-dtype templates */
#define FSGD_CAT_(a, b) a##_##b
#define FSGD_CAT(a, b) FSGD_CAT_(a, b)

#endif
