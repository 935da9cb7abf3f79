/* Uncontended lock/unlock pairs: bench N prints the time per pair, wall
 * clock and the thread's CPU time (which leaves out time spent descheduled,
 * e.g. waiting for a busy drainer to make room in a full ring). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static double ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    double wall = ns(CLOCK_MONOTONIC), cpu = ns(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    wall = ns(CLOCK_MONOTONIC) - wall;
    cpu = ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
    printf("pairs=%ld\nwall_ns_per_pair=%.1f\ncpu_ns_per_pair=%.1f\n", n, wall / n, cpu / n);
    return 0;
}
