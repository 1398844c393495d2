/* niche-port: start the event loop of the port process (depth 0). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "niche.h"

int niche_maxchild(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1020;
    long n = (long)rl.rlim_cur / 4 - 4; /* as alcove: 4 descriptors a child */
    return n < 0 ? 0 : n > 0x7fffffff ? 0x7fffffff : (int)n;
}

/* A new session on a line the port outlives (a serial line never reaches
 * end of file): the old tree is gone, start again as a fresh port. What
 * exec keeps (credentials, namespaces, cwd, rlimits of this process) stays. */
void port_reexec(struct niche_state *s)
{
    char nonce[16];
    snprintf(nonce, sizeof(nonce), "%u", (unsigned)s->nonce);
    char *argv[] = {"niche-port", "--session", nonce, NULL};
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
#endif
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    execve("/proc/self/exe", argv, environ);
    _exit(111);
}

int main(int argc, char **argv)
{
    /* Descriptors 0-2 must exist, or a pipe would land on them. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            return 111;
    /* Start from default dispositions whatever ignored signals we were
     * given (ignores survive exec and would reach every program we run).
     * The raw call also reaches the signals libc keeps for itself (32-34). */
    struct { void *handler; unsigned long flags; void *restorer; uint64_t mask; } dfl = {0};
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
    signal(SIGPIPE, SIG_IGN); /* a write to a gone peer is EPIPE, not death */
    static struct niche_state s = {
        .maxforkdepth = 16, .exit_status = 1, .termsig = 1, .flowcontrol = -1,
        .signaloneof = SIGTERM,
    };
    s.maxchild = niche_maxchild();
    sigemptyset(&s.sigmask);
    sigaddset(&s.sigmask, SIGCHLD);
    niche_init(&s, 0, 1, 0);
    if (argc == 3 && strcmp(argv[1], "--session") == 0)
        hello_reply(&s, 1, (uint32_t)strtoul(argv[2], NULL, 10));
    niche_loop(&s);
}
