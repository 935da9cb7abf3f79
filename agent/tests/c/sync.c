/* The known program of tests/sync.rs: every count of sync events it makes
 * is fixed, so the test can assert them exactly.
 *
 *   - 2 workers: 1000 x (lock, unlock) of counter_lock each;
 *   - a condition-variable handoff (consumer waits, main signals), made
 *     deterministic by a semaphore: the consumer posts while holding the
 *     mutex, so main's lock only succeeds once the consumer is waiting;
 *   - a trylock that fails with EBUSY (lock_busy/try_busy);
 *   - an errorcheck mutex unlocked by a thread that does not own it (EPERM);
 *   - a recursive mutex locked twice;
 *   - a PRIO_INHERIT mutex locked once.
 * It prints the addresses the test needs, one "name=value" per line.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#define ITERS 1000

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static sem_t waiting;
static int ready;

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ec, rec, pi;
static int intruder_ret;

void *worker(void *arg)
{
    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&counter_lock);
        counter++;
        pthread_mutex_unlock(&counter_lock);
    }
    return arg;
}

void *consumer(void *arg)
{
    pthread_mutex_lock(&m);
    sem_post(&waiting);
    while (!ready)
        pthread_cond_wait(&cond, &m);
    pthread_mutex_unlock(&m);
    return arg;
}

void *intruder(void *arg)
{
    intruder_ret = pthread_mutex_unlock(&ec);
    return arg;
}

__attribute__((noinline)) void lock_busy(void)
{
    pthread_mutex_lock(&busy);
}

__attribute__((noinline)) int try_busy(void)
{
    return pthread_mutex_trylock(&busy);
}

static void init_kind(pthread_mutex_t *mx, int type, int protocol)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type >= 0)
        pthread_mutexattr_settype(&a, type);
    if (protocol >= 0)
        pthread_mutexattr_setprotocol(&a, protocol);
    pthread_mutex_init(mx, &a);
    pthread_mutexattr_destroy(&a);
}

int main(void)
{
    pthread_t w1, w2, c, in;

    printf("worker=%p\n", (void *)worker);
    printf("main=%p\n", (void *)main);
    printf("lock_busy=%p\n", (void *)lock_busy);
    printf("counter_lock=%p\nm=%p\ncond=%p\nsem=%p\nbusy=%p\nec=%p\nrec=%p\npi=%p\n",
           (void *)&counter_lock, (void *)&m, (void *)&cond, (void *)&waiting,
           (void *)&busy, (void *)&ec, (void *)&rec, (void *)&pi);

    pthread_create(&w1, NULL, worker, NULL);
    pthread_create(&w2, NULL, worker, NULL);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);

    sem_init(&waiting, 0, 0);
    pthread_create(&c, NULL, consumer, NULL);
    sem_wait(&waiting);
    pthread_mutex_lock(&m);
    ready = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&m);
    pthread_join(c, NULL);
    sem_destroy(&waiting);

    lock_busy();
    int try_ret = try_busy();
    pthread_mutex_unlock(&busy);

    init_kind(&ec, PTHREAD_MUTEX_ERRORCHECK, -1);
    pthread_mutex_lock(&ec);
    pthread_create(&in, NULL, intruder, NULL);
    pthread_join(in, NULL);
    pthread_mutex_unlock(&ec);

    init_kind(&rec, PTHREAD_MUTEX_RECURSIVE, -1);
    pthread_mutex_lock(&rec);
    pthread_mutex_lock(&rec);
    pthread_mutex_unlock(&rec);
    pthread_mutex_unlock(&rec);

    init_kind(&pi, -1, PTHREAD_PRIO_INHERIT);
    pthread_mutex_lock(&pi);
    pthread_mutex_unlock(&pi);
    pthread_mutex_destroy(&pi);

    printf("w1=%lu\nw2=%lu\nc=%lu\nin=%lu\n", (unsigned long)w1, (unsigned long)w2,
           (unsigned long)c, (unsigned long)in);
    printf("counter=%ld\ntry=%d\nintruder=%d\n", counter, try_ret, intruder_ret);
    return 0;
}
