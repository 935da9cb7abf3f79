/* mem_loop.c -- memory-heavy threads for bench/mem_overhead.sh: T threads
 * each sweep a private array N times (a load and a store per element),
 * then add their sum to a shared total under a mutex. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define T 2
#define LEN 4096

static long total;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long rounds;

static void *worker(void *arg)
{
    long *a = calloc(LEN, sizeof(long));
    long sum = 0;
    (void)arg;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < LEN; i++) {
            a[i] += i;
            sum += a[i];
        }
    pthread_mutex_lock(&m);
    total += sum;
    pthread_mutex_unlock(&m);
    free(a);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[T];
    rounds = argc > 1 ? atol(argv[1]) : 1000;
    for (int i = 0; i < T; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    printf("total=%ld\n", total);
    return 0;
}
