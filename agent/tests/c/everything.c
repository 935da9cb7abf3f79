/* Calls every function the agent interposes, including the awkward ones:
 * a robust mutex whose owner dies (EOWNERDEAD), timeouts (ETIMEDOUT), a
 * thread cancelled inside pthread_cond_wait and one inside sem_wait (glibc
 * unwinds through the agent's frames), pthread_exit, a detached thread,
 * a barrier, once, a named semaphore, scheduling calls.
 *
 * Its output and exit status (3) must be the same natively, with an inert
 * agent and with a recording agent.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t robust, pp, plain = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cc = PTHREAD_COND_INITIALIZER;
static sem_t started, never, detached_done;
static pthread_barrier_t barrier;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs;

static struct timespec in_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += ms * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

static void init_once(void) { once_runs++; }

static void *die_holding(void *arg)
{
    pthread_mutex_lock(&robust);
    return arg; /* the owner dies: the next locker gets EOWNERDEAD */
}

static void unlock_cm(void *arg) { (void)arg; pthread_mutex_unlock(&cm); }

static void *wait_forever_cond(void *arg)
{
    pthread_mutex_lock(&cm);
    pthread_cleanup_push(unlock_cm, NULL);
    sem_post(&started);
    for (;;)
        pthread_cond_wait(&cc, &cm);
    pthread_cleanup_pop(0);
    return arg;
}

static void *wait_forever_sem(void *arg)
{
    sem_post(&started);
    sem_wait(&never);
    return arg;
}

static void *exits(void *arg)
{
    (void)arg;
    pthread_exit((void *)42);
}

static void *barrier_peer(void *arg)
{
    int r = pthread_barrier_wait(&barrier);
    pthread_once(&once, init_once);
    return (void *)(intptr_t)(r == PTHREAD_BARRIER_SERIAL_THREAD);
}

static void *detached(void *arg)
{
    sem_post(&detached_done);
    return arg;
}

static void rwlocks(void)
{
    pthread_rwlock_t rw;
    struct timespec t = in_ms(10);
    pthread_rwlock_init(&rw, NULL);
    printf("rdlock=%d ", pthread_rwlock_rdlock(&rw));
    printf("trywr=%d ", pthread_rwlock_trywrlock(&rw));
    printf("timedwr=%d ", pthread_rwlock_timedwrlock(&rw, &t));
    printf("tryrd=%d ", pthread_rwlock_tryrdlock(&rw));
    pthread_rwlock_unlock(&rw);
    pthread_rwlock_unlock(&rw);
    printf("wrlock=%d ", pthread_rwlock_wrlock(&rw));
    printf("unlock=%d ", pthread_rwlock_unlock(&rw));
    printf("timedrd=%d ", pthread_rwlock_timedrdlock(&rw, &t));
    pthread_rwlock_unlock(&rw);
    printf("destroy=%d\n", pthread_rwlock_destroy(&rw));
}

static void spins_and_barrier(void)
{
    pthread_spinlock_t s;
    pthread_t peer;
    void *serial_peer;
    pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE);
    pthread_spin_lock(&s);
    printf("spin_try=%d ", pthread_spin_trylock(&s));
    pthread_spin_unlock(&s);
    printf("spin_destroy=%d\n", pthread_spin_destroy(&s));

    pthread_barrier_init(&barrier, NULL, 2);
    pthread_create(&peer, NULL, barrier_peer, NULL);
    int r = pthread_barrier_wait(&barrier);
    pthread_join(peer, &serial_peer);
    printf("one_serial=%d\n", (r == PTHREAD_BARRIER_SERIAL_THREAD) + (int)(intptr_t)serial_peer);
    pthread_barrier_destroy(&barrier);
    pthread_once(&once, init_once);
    printf("once_runs=%d\n", once_runs);
}

static void mutexes(void)
{
    pthread_mutexattr_t a;
    pthread_t t;
    struct timespec soon = in_ms(10);

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &a);
    pthread_mutexattr_destroy(&a);
    pthread_create(&t, NULL, die_holding, NULL);
    pthread_join(t, NULL);
    int r = pthread_mutex_lock(&robust);
    printf("ownerdead=%d ", r == EOWNERDEAD);
    printf("consistent=%d ", pthread_mutex_consistent(&robust));
    printf("unlock=%d\n", pthread_mutex_unlock(&robust));

    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_PROTECT);
    pthread_mutexattr_setprioceiling(&a, 10);
    printf("pp_init=%d\n", pthread_mutex_init(&pp, &a));
    pthread_mutexattr_destroy(&a);
    if (pthread_mutex_lock(&pp) == 0)
        pthread_mutex_unlock(&pp);
    pthread_mutex_destroy(&pp);

    pthread_mutex_lock(&plain);
    printf("timedlock=%d ", pthread_mutex_timedlock(&plain, &soon));
    pthread_mutex_unlock(&plain);
    pthread_mutex_lock(&cm);
    soon = in_ms(10);
    printf("timedwait=%d ", pthread_cond_timedwait(&cc, &cm, &soon));
    pthread_mutex_unlock(&cm);
    printf("broadcast=%d\n", pthread_cond_broadcast(&cc));
}

static void semaphores(void)
{
    char name[64];
    struct timespec soon = in_ms(10);
    snprintf(name, sizeof name, "/lockstep-agent-test-%d", (int)getpid());
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
    printf("sem_open=%d ", s != SEM_FAILED);
    printf("try1=%d ", sem_trywait(s));
    int r = sem_trywait(s);
    printf("try2=%d/%s ", r, r ? strerror(errno) : "-");
    r = sem_timedwait(s, &soon);
    printf("timed=%d/%s ", r, r ? strerror(errno) : "-");
    printf("post=%d ", sem_post(s));
    printf("close=%d\n", sem_close(s));
    sem_unlink(name);
}

static void threads(void)
{
    pthread_t t;
    pthread_attr_t attr;
    struct sched_param sp = { .sched_priority = 0 };
    void *ret;

    sem_init(&started, 0, 0);
    sem_init(&never, 0, 0);
    sem_init(&detached_done, 0, 0);

    pthread_create(&t, NULL, wait_forever_cond, NULL);
    sem_wait(&started);
    pthread_mutex_lock(&cm); /* only once the thread waits */
    pthread_mutex_unlock(&cm);
    pthread_cancel(t);
    pthread_join(t, &ret);
    printf("cancel_cond=%d ", ret == PTHREAD_CANCELED);

    pthread_create(&t, NULL, wait_forever_sem, NULL);
    sem_wait(&started);
    pthread_cancel(t);
    pthread_join(t, &ret);
    printf("cancel_sem=%d ", ret == PTHREAD_CANCELED);

    pthread_create(&t, NULL, exits, NULL);
    pthread_join(t, &ret);
    printf("exit=%ld\n", (long)(intptr_t)ret);

    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
    pthread_attr_setschedparam(&attr, &sp);
    pthread_create(&t, &attr, detached, NULL);
    pthread_attr_destroy(&attr);
    printf("detach=%d ", pthread_detach(t));
    sem_wait(&detached_done);
    printf("setschedparam=%d ", pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp));
    printf("setschedprio=%d\n", pthread_setschedprio(pthread_self(), 0));
    sem_destroy(&started);
    sem_destroy(&never);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    rwlocks();
    spins_and_barrier();
    mutexes();
    semaphores();
    threads();
    return 3;
}
