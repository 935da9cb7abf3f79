/* matmul.c -- the race fixture of bench/race_overhead.sh: the exam's
 * threaded ikj matrix multiply (fixtures/matrix_race.c) at benchmark size,
 * T threads (default 4) each computing a band of rows of an N x N product
 * (default 128), with the exam's bug kept: the arguments of every thread
 * are one loop-local struct in main's frame (`&m`), overwritten for the
 * next thread while earlier threads may still read it.  The race detector
 * must report it (main's write of m vs. the threads' reads).
 *
 * Usage: matmul [N] [T]; prints a checksum of c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MELT(matrix, sz, row, col) (matrix)[(row) * (sz) + (col)]

typedef struct band_args {
    double *c;
    const double *a;
    const double *b;
    size_t sz;
    size_t lo, hi;
} band_args;

static void *band_thread(void *arg)
{
    band_args *m = (band_args *)arg;
    for (size_t i = m->lo; i < m->hi; ++i) {
        for (size_t j = 0; j < m->sz; ++j)
            MELT(m->c, m->sz, i, j) = 0;
        for (size_t k = 0; k < m->sz; ++k)
            for (size_t j = 0; j < m->sz; ++j)
                MELT(m->c, m->sz, i, j) += MELT(m->a, m->sz, i, k) * MELT(m->b, m->sz, k, j);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t sz = argc > 1 ? strtoul(argv[1], NULL, 10) : 128;
    size_t nt = argc > 2 ? strtoul(argv[2], NULL, 10) : 4;
    double *a = malloc(sizeof(double) * sz * sz);
    double *b = malloc(sizeof(double) * sz * sz);
    double *c = malloc(sizeof(double) * sz * sz);
    pthread_t *threads = malloc(sizeof(pthread_t) * nt);
    for (size_t i = 0; i < sz; ++i)
        for (size_t j = 0; j < sz; ++j) {
            MELT(a, sz, i, j) = (double)(i * sz + j + 1);
            MELT(b, sz, i, j) = (double)((i + 2 * j) % 5);
        }
    for (size_t t = 0; t < nt; ++t) {
        band_args m = {c, a, b, sz, t * sz / nt, (t + 1) * sz / nt}; /* the bug: one slot for all */
        pthread_create(&threads[t], NULL, band_thread, &m);
    }
    for (size_t t = 0; t < nt; ++t)
        pthread_join(threads[t], NULL);
    double sum = 0;
    for (size_t i = 0; i < sz * sz; ++i)
        sum += c[i];
    printf("checksum %.0f\n", sum);
    free(threads);
    free(a);
    free(b);
    free(c);
    return 0;
}
