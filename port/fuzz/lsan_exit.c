/* Linked into the ASan build only (-Wl,--wrap=_exit): the port's processes
 * leave through _exit, which skips LeakSanitizer's exit-time check. Run it
 * in the port process itself, and in its event-loop children when
 * NICHE_LSAN_CHILDREN is set (a sandboxed child may not be allowed the
 * system calls the check makes, so the suite leaves them out). */
#include <sanitizer/lsan_interface.h>
#include <stdlib.h>
#include <unistd.h>

static pid_t port_pid;
static int children;

__attribute__((constructor)) static void lsan_exit_init(void)
{
    port_pid = getpid();
    children = getenv("NICHE_LSAN_CHILDREN") != NULL;
}

void __real__exit(int code) __attribute__((noreturn));
void __wrap__exit(int code) __attribute__((noreturn));
void __wrap__exit(int code)
{
    if (children || getpid() == port_pid)
        __lsan_do_leak_check();
    __real__exit(code);
}
