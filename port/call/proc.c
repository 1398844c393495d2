/* Processes: fork, clone, getpid, getppid, exit, kill. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "niche.h"

static int spawn_reply(struct niche_ctx *c, unsigned long flags)
{
    pid_t pid;
    int r = spawn(c->s, flags, &pid);
    if (r == 0)
        t_int(&c->res, pid);
    return r;
}

int niche_sys_fork(struct niche_ctx *c) { return spawn_reply(c, 0); }

int niche_sys_clone(struct niche_ctx *c)
{
    /* Sharing memory or a thread group would break the loop's invariants. */
    const unsigned long forbidden = CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_VFORK;
    if ((unsigned long)c->a[0].i & forbidden)
        return EINVAL;
    return spawn_reply(c, (unsigned long)c->a[0].i);
}

int niche_sys_getpid(struct niche_ctx *c)
{
    t_int(&c->res, getpid());
    return 0;
}

int niche_sys_getppid(struct niche_ctx *c)
{
    t_int(&c->res, getppid());
    return 0;
}

int niche_sys_exit(struct niche_ctx *c)
{
    t_none(&c->res);
    begin_shutdown(c->s, (int)c->a[0].i);
    return 0;
}

int niche_sys_kill(struct niche_ctx *c)
{
    if (kill((pid_t)c->a[0].i, (int)c->a[1].i) < 0)
        return errno;
    t_none(&c->res);
    return 0;
}
