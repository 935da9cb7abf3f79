/* fork and exec under the agent.
 *   fork          main locks, forks; the child locks and exits; main locks again
 *   fork exec     the same, but the child execs this program ("child" mode),
 *                 which locks once more in the new image
 *   fork thread   a second thread does the forking
 * Each "lock" is one lock/unlock pair of the same mutex (3 events).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static const char *mode = "";
static const char *argv0;

static void lock_once(void)
{
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
}

static void *fork_and_wait(void *arg)
{
    lock_once();
    pid_t pid = fork();
    if (pid == 0) {
        lock_once();
        if (strcmp(mode, "exec") == 0) {
            execl("/proc/self/exe", argv0, "child", (char *)NULL);
            _exit(127);
        }
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    lock_once();
    printf("child=%d\nstatus=%d\n", (int)pid, WEXITSTATUS(status));
    return arg;
}

int main(int argc, char **argv)
{
    argv0 = argv[0];
    if (argc > 1)
        mode = argv[1];
    if (strcmp(mode, "child") == 0) {
        lock_once();
        return 0;
    }
    printf("parent=%d\n", (int)getpid());
    fflush(stdout);
    if (strcmp(mode, "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, fork_and_wait, NULL);
        pthread_join(t, NULL);
    } else {
        fork_and_wait(NULL);
    }
    return 0;
}
