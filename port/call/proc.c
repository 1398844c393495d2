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

/* Only new namespaces (and flags that share nothing the loop relies on):
 * sharing memory, descriptors, the file system view or the parent would let
 * the new child's set-up break its parent's loop (CLONE_FILES: it closes the
 * parent's descriptors; CLONE_FS: its chroot moves the parent; CLONE_PARENT:
 * its exit is reported to someone else). */
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0
#endif
#define CLONE_ALLOWED (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
                       CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME | CLONE_SYSVSEM | CLONE_IO | \
                       CLONE_UNTRACED)

int niche_sys_clone(struct niche_ctx *c)
{
    unsigned long flags = (unsigned long)c->a[0].i;
    if (c->a[0].i < 0 || (flags & ~(unsigned long)CLONE_ALLOWED))
        return EINVAL;
    return spawn_reply(c, flags);
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
    return niche_ok(c, kill((pid_t)c->a[0].i, (int)c->a[1].i));
}
