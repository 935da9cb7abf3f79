/* A shared library the atfork program links: its constructor runs before
 * the preloaded agent's, so its fork handlers are registered first, and its
 * child handler runs before the agent's. It does what libraries do to be
 * fork-safe: lock in prepare, unlock in parent and child. */
#include <pthread.h>
#include <stdio.h>

pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

static void prepare(void) { pthread_mutex_lock(&lib_lock); }
static void unlock(void) { pthread_mutex_unlock(&lib_lock); }

__attribute__((constructor)) static void register_handlers(void)
{
    pthread_atfork(prepare, unlock, unlock);
}
