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

/* Loops that call exp run in an AVX2 clone where the CPU has it (ELF only).
 * The optimizer's loops also have an AVX-512 clone (half the instructions per
 * element: an Adam or Nesterov step about 1.3x faster on Zen 4). AVX-512F
 * brings fused multiply-adds, which the compiler would use in a loop's vector
 * body but not always in its peeled or remainder iterations, so an element's
 * bits would depend on where the array starts; contraction is off in these
 * clones, as it is in the AVX2 and default ones, which have no FMA: every clone
 * gives the same bits. */
#if FSGD_X86 && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define FSGD_CLONES __attribute__((target_clones("avx2", "default")))
#define FSGD_CLONES_OPT                                                                       \
    __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#else
#define FSGD_CLONES
#define FSGD_CLONES_OPT
#endif

/* ---- vector types and target attributes of the SIMD paths -------------------- */
typedef float fsgd_v4f __attribute__((vector_size(16)));
typedef double fsgd_v2d __attribute__((vector_size(16)));
#if FSGD_X86
typedef float fsgd_v8f __attribute__((vector_size(32)));
typedef double fsgd_v4d __attribute__((vector_size(32)));
typedef float fsgd_v16f __attribute__((vector_size(64)));
typedef double fsgd_v8d __attribute__((vector_size(64)));
#endif

#define FSGD_TARGET_NONE
#define FSGD_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FSGD_TARGET_AVX512 __attribute__((target("avx512f")))

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


/* ---- one parallel region per call --------------------------------------------
 * The network's calls (fsgd_net_*) open one OpenMP region and run every layer
 * inside it: each kernel has a team body whose loops are orphaned worksharing
 * constructs (`omp for`), so they bind to that region's team, or run on one
 * thread when called outside a region (which is how a team of one runs: see
 * FSGD_RUN below). Bodies end with a barrier (the loops'
 * implicit one) unless they say otherwise. Work is split by independent rows,
 * columns or tiles only: no sum's order depends on the team's size. */
#define FSGD_PANELS_MAX 8

/* a spinning thread gives its core away now and then (sparse_tmpl.h's panels) */
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define FSGD_HAVE_YIELD 1
#else
#define FSGD_HAVE_YIELD 0
#endif
typedef struct {
    char *scratch; /* shared by the team, sized before the region opens */
    char *buck;    /* a training step's sparse buckets (sparse_tmpl.h), or NULL */
    int status;    /* an error any thread met (FSGD_OK: none) */
    int refused;   /* the optimizer's check pass found a non-finite value */
    double loss;
    int64_t correct;
    /* A training step's sparse first layer split into panels of its input columns, one
     * per thread (see "Panels" in sparse_tmpl.h), for a team of npanel (0: none):
     * panel t holds columns [pcol[t], pcol[t + 1]), whose rows of W, dW and the
     * optimizer's state lie at flat offsets [pflat[t], pflat[t + 1]). */
    int npanel;
    int pfail;   /* the panels' filing failed: the backward sorts instead */
    int64_t pcol[FSGD_PANELS_MAX + 1];
    int64_t pflat[FSGD_PANELS_MAX + 1];
    char *pipe;  /* the panels' shared state (sparse_tmpl.h) */
    /* the optimizer step's screen (optim_tmpl.h): the largest magnitudes of the
       gradients and of the new parameters and momenta, as bits, over the team */
    uint64_t g_bits, p_bits, s_bits, v_bits;
    int wrote;   /* the write pass ran */
} fsgd_team;

/* *dst = max(*dst, v), shared by a team (seen by all after the next barrier) */
static inline void fsgd_atomic_umax(uint64_t *dst, uint64_t v)
{
    uint64_t cur = __atomic_load_n(dst, __ATOMIC_RELAXED);
    while (v > cur &&
           !__atomic_compare_exchange_n(dst, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* Threads worth a product of M x N x K: about 2 MFLOP per thread. */
static inline int fsgd_gemm_threads(int nthreads, int64_t M, int64_t N, int64_t K)
{
    int nt = nthreads < 1 ? 1 : nthreads;
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    const int64_t useful = (int64_t)(flops / 2.0e6) + 1;
    if (useful < nt) nt = (int)useful;
    return nt;
}

/* The blocking of one GEMM (gemm_tmpl.h). */
typedef struct {
    int64_t kc_blk, mc_blk;
    int direct;   /* A read in place */
    int direct_b; /* full slivers of B read in place (op(B) = B) */
    size_t b_off; /* packed B's offset in the scratch */
    size_t bytes; /* scratch needed */
} fsgd_gemm_shape;

/* A GEMM epilogue: fn runs on each finished tile C[i0:i0+mv, j0:j0+nv] (the
 * tile pointer c, row stride ldc) by the thread that computed it; colsum, when
 * not NULL (and op(B) = B), receives the column sums of B over K, each summed
 * by one thread with its rows in order. */
#define FSGD_EPI_DECL(T, SFX)                                                                 \
    typedef struct {                                                                          \
        void (*fn)(const void *ctx, int64_t i0, int64_t j0, int mv, int nv, T *c,             \
                   int64_t ldc);                                                              \
        const void *ctx;                                                                      \
        T *colsum;                                                                            \
    } fsgd_epi_##SFX;                                                                         \
    size_t fsgd_gemm_scratch_##SFX(int trans_a, const int64_t *a_rows, int64_t M, int64_t N,  \
                                   int64_t K);                                                \
    void fsgd_gemm_team_##SFX(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,      \
                              T alpha, const T *A, int64_t lda, const int64_t *a_rows,        \
                              const T *B, int64_t ldb, T beta, T *C, int64_t ldc,             \
                              const fsgd_epi_##SFX *epi, void *scratch);
FSGD_EPI_DECL(float, f32)
FSGD_EPI_DECL(double, f64)
#undef FSGD_EPI_DECL

/* FSGD_OMP_FOR: a worksharing loop of the team.
 * FSGD_RUN(nt, call): the team body `call` run by a team of nt threads (a variable
 * named nt at the call site): in a parallel region when nt > 1; else on the calling
 * thread outside any region, where its worksharing loops and barriers are plain code
 * (libgomp makes a system call at every barrier of a region's team of one: about ten
 * per training step). Called from inside an active region (a C caller's own), a team
 * of one still gets an inactive region of its own, so that the body's loops bind to
 * it and not to the caller's team. */
#ifdef _OPENMP
#define FSGD_OMP_FOR _Pragma("omp for schedule(static)")
#define FSGD_RUN(nt, ...)                                                                     \
    do {                                                                                      \
        if ((nt) > 1 || omp_in_parallel()) {                                                  \
            _Pragma("omp parallel num_threads(nt) if (nt > 1)") { __VA_ARGS__; }              \
        } else {                                                                              \
            __VA_ARGS__;                                                                      \
        }                                                                                     \
    } while (0)
#else
#define FSGD_OMP_FOR
#define FSGD_RUN(nt, ...)                                                                     \
    do {                                                                                      \
        (void)(nt);                                                                           \
        __VA_ARGS__;                                                                          \
    } while (0)
#endif

#ifdef _OPENMP
#define FSGD_TEAM_SET(field, value) _Pragma("omp atomic write") field = (value)
#else
#define FSGD_TEAM_SET(field, value) field = (value)
#endif
/* read a flag another thread may have set before the last barrier */
static inline int fsgd_team_get(const int *field)
{
    int v;
#ifdef _OPENMP
#pragma omp atomic read
#endif
    v = *field;
    return v;
}

/* ---- the adaptive team (fsgd_tuner in fsgd.h) -------------------------------- */
double fsgd_now(void); /* monotonic seconds */

/* calls a try lasts: its estimate is their mean, so one disturbed call does not
   decide */
#define FSGD_TUNER_TRY 4

/* the team for this call; *probe: whether it is part of a try of the other choice */
static inline int fsgd_tuner_pick(struct fsgd_tuner *t, int nt, int *probe)
{
    *probe = 0;
    if (!t || nt < 2) return nt;
    if (t->nthreads != nt) {
        memset(t, 0, sizeof *t);
        t->nthreads = nt;
        t->interval = 1;
        t->next_probe = 2; /* the first call warms up, the second is timed, then a try */
    }
    int single = t->single;
    if (t->calls >= t->next_probe) {
        *probe = 1;
        single = !single;
    }
    return single ? 1 : nt;
}

/* The current choice's calls move its estimate halfway each (the first call, which
 * warms the team up, is not counted); a try's mean replaces the other choice's.
 * A try ends after one call when that call already took FSGD_TUNER_FAR times the
 * current choice's estimate (a descheduled team member makes every call of a
 * try cost a scheduler slice or more, and one such call is evidence enough).
 * After a try the faster choice is kept, and the next try waits twice as long as
 * the last wait, or long enough that a slow try costs a few percent (32 calls per
 * unit of the slowdown the try showed), but no longer than 32, 128, 512, ...
 * calls (up to 4096) as tries keep confirming it: one unlucky try cannot hold a
 * wrong choice for long. A try FSGD_TUNER_FAR times slower may wait up to 16384
 * calls whatever the streak. */
#define FSGD_TUNER_FAR 4.0
static inline void fsgd_tuner_record(struct fsgd_tuner *t, int team, int probe, double seconds,
                                     int64_t rows)
{
    if (!t || t->nthreads < 2 || rows < 1) return;
    if (t->calls++ == 0) return;
    const int m = team == 1;
    const double pr = seconds / (double)rows;
    if (!probe) {
        t->per_row[m] = t->seen[m] ? 0.5 * t->per_row[m] + 0.5 * pr : pr;
        t->seen[m] = 1;
        return;
    }
    t->try_sum += pr;
    ++t->try_calls;
    const int far = t->seen[!m] && pr > FSGD_TUNER_FAR * t->per_row[!m];
    if (t->try_calls < FSGD_TUNER_TRY && !far) return; /* the try goes on */
    t->per_row[m] = t->try_sum / (double)t->try_calls;
    t->seen[m] = 1;
    t->try_sum = 0.0;
    t->try_calls = 0;
    t->probes[m]++;
    if (!(t->seen[0] && t->seen[1])) {
        t->next_probe = t->calls;
        return;
    }
    const int single = t->per_row[1] < t->per_row[0];
    const double fast = t->per_row[single], slow = t->per_row[!single];
    const double ratio = fast > 0.0 ? slow / fast : 1.0;
    const int kept = single == t->single;
    t->streak = kept ? (t->streak < 6 ? t->streak + 1 : 6) : 0;
    const int64_t most = ratio >= FSGD_TUNER_FAR ? 16384 : 4096;
    int64_t cap = (int64_t)32 << (2 * t->streak);
    if (ratio >= FSGD_TUNER_FAR) cap = most;
    int64_t next = kept ? 2 * t->interval : 8;
    const double by_cost = 32.0 * ratio;
    if (by_cost > (double)next) next = by_cost < (double)cap ? (int64_t)by_cost : cap;
    if (next > most) next = most;
    t->single = single;
    t->interval = next;
    t->next_probe = t->calls + next;
}

#endif
