/*
 * The thread count of a kernel call: shared by xnor_kernels.h and amx_conv_grad.c,
 * which are compiled into one library (so each keeps its own static copy).
 */
#ifndef BINARY_NET_XK_THREADS_H
#define BINARY_NET_XK_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

/* nthreads > 0 as given, else OpenMP's default (1 without OpenMP). */
static inline int resolve_threads(int nthreads)
{
#ifdef _OPENMP
    return nthreads > 0 ? nthreads : omp_get_max_threads();
#else
    (void)nthreads;
    return 1;
#endif
}

#endif
