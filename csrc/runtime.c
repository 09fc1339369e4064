/*
 * Run-time facts and process-wide state of the core: the SIMD path in use,
 * the per-thread workspace, OpenMP and compiler information, and the names
 * of the enums.
 */
#include "fsgd.h"
#include <time.h>
#include "fsgd_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- names ------------------------------------------------------------- */
static const char *const status_names[FSGD_STATUS_COUNT] = {
    [FSGD_OK] = "ok",
    [FSGD_ERR_ALLOC] = "out of memory in a kernel workspace",
    [FSGD_ERR_ARG] = "a kernel rejected its arguments",
    [FSGD_ERR_NONFINITE] = "a cost, a gradient or a stepped value is not finite",
};
static const char *const simd_names[FSGD_SIMD_COUNT] = {
    [FSGD_SIMD_GENERIC] = "generic", [FSGD_SIMD_AVX2] = "avx2", [FSGD_SIMD_AVX512] = "avx512"};
static const char *const act_names[FSGD_ACT_COUNT] = {
    [FSGD_ACT_LINEAR] = "linear",         [FSGD_ACT_SIGMOID] = "sigmoid",
    [FSGD_ACT_TANH] = "tanh",             [FSGD_ACT_RELU] = "relu",
    [FSGD_ACT_LEAKY_RELU] = "leaky_relu", [FSGD_ACT_SOFTMAX] = "softmax"};
static const char *const cost_names[FSGD_COST_COUNT] = {
    [FSGD_COST_MSE] = "mse",
    [FSGD_COST_CROSS_ENTROPY] = "cross_entropy",
    [FSGD_COST_BINARY_CROSS_ENTROPY] = "binary_cross_entropy",
    [FSGD_COST_MAE] = "mae",
    [FSGD_COST_HUBER] = "huber"};
static const char *const opt_names[FSGD_OPT_COUNT] = {[FSGD_OPT_SGD] = "sgd",
                                                      [FSGD_OPT_ADAGRAD] = "adagrad",
                                                      [FSGD_OPT_RMSPROP] = "rmsprop",
                                                      [FSGD_OPT_ADAM] = "adam"};
static const char *const layer_names[FSGD_LAYER_COUNT] = {
    [FSGD_LAYER_DENSE] = "dense",
    [FSGD_LAYER_DROPOUT] = "dropout",
    [FSGD_LAYER_BATCH_NORM] = "batch_normalization"};

#define NAME_OF(table, count, i) ((i) >= 0 && (i) < (count) ? (table)[i] : NULL)
const char *fsgd_status_str(int s) { return NAME_OF(status_names, FSGD_STATUS_COUNT, s); }
const char *fsgd_simd_name(int p) { return NAME_OF(simd_names, FSGD_SIMD_COUNT, p); }
const char *fsgd_act_name(int a) { return NAME_OF(act_names, FSGD_ACT_COUNT, a); }
const char *fsgd_cost_name(int c) { return NAME_OF(cost_names, FSGD_COST_COUNT, c); }
const char *fsgd_opt_name(int k) { return NAME_OF(opt_names, FSGD_OPT_COUNT, k); }
const char *fsgd_layer_name(int k) { return NAME_OF(layer_names, FSGD_LAYER_COUNT, k); }
#undef NAME_OF

int fsgd_simd_from_name(const char *name)
{
    if (!name) return -1;
    for (int p = 0; p < FSGD_SIMD_COUNT; p++)
        if (strcmp(name, simd_names[p]) == 0) return p;
    return -1;
}

/* ---- SIMD dispatch --------------------------------------------------------- */
static int simd_supported_cache = -1;
static int simd_active = -1;

int fsgd_simd_supported(void)
{
    if (simd_supported_cache < 0) {
        int s = FSGD_SIMD_GENERIC;
#if FSGD_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s = FSGD_SIMD_AVX2;
        if (__builtin_cpu_supports("avx512f")) s = FSGD_SIMD_AVX512;
#endif
        simd_supported_cache = s;
    }
    return simd_supported_cache;
}

int fsgd_simd_get(void)
{
    if (simd_active < 0) simd_active = fsgd_simd_supported();
    return simd_active;
}

int fsgd_simd_set(int path)
{
    if (path < FSGD_SIMD_GENERIC || path > fsgd_simd_supported()) return FSGD_ERR_ARG;
    simd_active = path;
    return FSGD_OK;
}

/* ---- clock ------------------------------------------------------------------ */
double fsgd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- per-thread workspace ------------------------------------------------- */
/* Each calling thread keeps one 64-byte aligned buffer that only grows; the
 * team of a parallel GEMM shares its caller's buffer. Freed at thread exit. */
typedef struct {
    void *ptr;
    size_t size;
} workspace;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_free(void *p)
{
    workspace *w = (workspace *)p;
    if (w) {
        free(w->ptr);
        free(w);
    }
}

static void ws_init(void) { pthread_key_create(&ws_key, ws_free); }

void *fsgd_workspace(size_t bytes)
{
    pthread_once(&ws_once, ws_init);
    workspace *w = (workspace *)pthread_getspecific(ws_key);
    if (!w) {
        w = (workspace *)calloc(1, sizeof *w);
        if (!w) return NULL;
        if (pthread_setspecific(ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->size < bytes) {
        size_t sz = (bytes + 4095) & ~(size_t)4095;
        void *p = NULL;
        if (posix_memalign(&p, 64, sz) != 0) return NULL;
        free(w->ptr);
        w->ptr = p;
        w->size = sz;
    }
    return w->ptr;
}

/* ---- OpenMP and compiler ------------------------------------------------- */
int fsgd_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fsgd_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fsgd_omp_set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int fsgd_cpu_count(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

const char *fsgd_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int fsgd_tuner_replay(fsgd_tuner *t, int nt, double seconds_full, double seconds_single,
                      int64_t rows)
{
    int probe;
    const int team = fsgd_tuner_pick(t, nt, &probe);
    fsgd_tuner_record(t, team, probe, team == 1 ? seconds_single : seconds_full, rows);
    return team;
}
