/* The known program of tests/sync.rs: every count of sync events it makes
 * is fixed, except how many of its pthread_mutex_lock/sem_wait calls found
 * the object taken (the agent tries those first and writes a Request only
 * when the try fails), and even that is fixed call by call except for the
 * workers' counter_lock and main's lock of m.
 *
 *   - 2 workers: 1000 x (lock, unlock) of counter_lock each (contended or
 *     not, as the scheduler decides);
 *   - a condition-variable handoff (consumer waits, main signals), made
 *     deterministic by a semaphore: the consumer posts while holding the
 *     mutex, so main's lock only succeeds once the consumer is waiting;
 *   - a trylock that fails with EBUSY (lock_busy/try_busy);
 *   - an errorcheck mutex relocked by its owner (EDEADLK: its try fails,
 *     so Request, then Failed) and unlocked by a thread that does not own
 *     it (EPERM);
 *   - a recursive mutex locked twice;
 *   - a PRIO_INHERIT mutex locked once;
 *   - a lock and a sem_wait that must block (held/go, thread `blocked`):
 *     main holds `held` until `blocked` waits for it, and `blocked` posts
 *     `go` only once main waits on it, so each makes Request, then
 *     Acquired, the Request before the release that ends the wait.
 * It prints the addresses the test needs, one "name=value" per line.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static sem_t go;

/* Whether a thread is waiting inside the real call, read from glibc's
 * x86-64 fields (the agent reads __lock and __kind the same way). A normal
 * mutex's __lock becomes 2 when a locker enters the kernel wait path; a
 * semaphore counts its waiters in the high half of its first 64 bits while
 * sem_wait is in its slow path. Either only happens after the agent's try
 * failed and its Request was written. */
static int held_is_awaited(void)
{
    return __atomic_load_n(&held.__data.__lock, __ATOMIC_ACQUIRE) == 2;
}

static int go_is_awaited(void)
{
    return (__atomic_load_n((uint64_t *)&go, __ATOMIC_ACQUIRE) >> 32) != 0;
}

/* Polls `cond`; gives up (exit 2) after about 10 s rather than hang. */
static void wait_until(int (*cond)(void), const char *what)
{
    for (long i = 0; !cond(); i++) {
        if (i == 500000) {
            fprintf(stderr, "sync: %s never happened\n", what);
            exit(2);
        }
        usleep(20);
    }
}

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

void *blocked(void *arg)
{
    pthread_mutex_lock(&held); /* main holds it until this waits */
    pthread_mutex_unlock(&held);
    wait_until(go_is_awaited, "main waiting on go");
    sem_post(&go);
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
    pthread_t w1, w2, c, in, bl;

    printf("worker=%p\n", (void *)worker);
    printf("main=%p\n", (void *)main);
    printf("lock_busy=%p\n", (void *)lock_busy);
    printf("counter_lock=%p\nm=%p\ncond=%p\nsem=%p\nbusy=%p\nec=%p\nrec=%p\npi=%p\n",
           (void *)&counter_lock, (void *)&m, (void *)&cond, (void *)&waiting,
           (void *)&busy, (void *)&ec, (void *)&rec, (void *)&pi);
    printf("held=%p\ngo=%p\n", (void *)&held, (void *)&go);

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
    int relock_ret = pthread_mutex_lock(&ec); /* EDEADLK */
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

    sem_init(&go, 0, 0);
    pthread_mutex_lock(&held);
    pthread_create(&bl, NULL, blocked, NULL);
    wait_until(held_is_awaited, "blocked waiting for held");
    pthread_mutex_unlock(&held);
    sem_wait(&go); /* posted only once this waits */
    pthread_join(bl, NULL);
    sem_destroy(&go);

    printf("w1=%lu\nw2=%lu\nc=%lu\nin=%lu\nbl=%lu\n", (unsigned long)w1, (unsigned long)w2,
           (unsigned long)c, (unsigned long)in, (unsigned long)bl);
    printf("counter=%ld\ntry=%d\nrelock=%d\nintruder=%d\n", counter, try_ret, relock_ret,
           intruder_ret);
    return 0;
}
