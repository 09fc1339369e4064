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

/* A 64-byte aligned scratch buffer owned by the calling thread (grown, never
 * shrunk, freed when the thread exits). NULL when memory runs out. */
void *fsgd_workspace(size_t bytes);

/* Elementwise loops smaller than this run on one thread. */
#define FSGD_PAR_MIN 32768

#endif
