/* A signal handler that calls sem_post (async-signal-safe) while the main
 * thread is busy locking and unlocking, so that signals land inside the
 * agent's own code. The interrupted events must stay intact and in order;
 * posts made while the agent was busy are forwarded and counted as dropped.
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static sem_t s;
static volatile sig_atomic_t posts;

static void on_alarm(int sig)
{
    (void)sig;
    sem_post(&s);
    posts++;
}

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 300000;
    struct sigaction sa = { .sa_handler = on_alarm };
    struct itimerval every = { { 0, 20 }, { 0, 20 } }, off = { { 0, 0 }, { 0, 0 } };
    sigset_t alrm;

    sem_init(&s, 0, 0);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &every, NULL);
    for (long i = 0; i < pairs; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    setitimer(ITIMER_REAL, &off, NULL);
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, NULL);

    int value;
    sem_getvalue(&s, &value);
    printf("pairs=%ld\nposts=%d\nvalue=%d\n", pairs, (int)posts, value);
    return 0;
}
