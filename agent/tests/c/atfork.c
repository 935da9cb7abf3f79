/* Forks once; the handlers of atfork_lib.c make sync calls around it,
 * including one in the child before the agent's own child handler runs. */
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern pthread_mutex_t lib_lock;

int main(void)
{
    printf("parent=%d\nlib_lock=%p\n", (int)getpid(), (void *)&lib_lock);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&lib_lock);
        pthread_mutex_unlock(&lib_lock);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child=%d\nstatus=%d\n", (int)pid, WEXITSTATUS(status));
    return 0;
}
