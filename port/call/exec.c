/* execve, execvp: replace the process; the parent acknowledges success
 * when close-on-exec closes our control socket. */
#include <errno.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_execve(struct niche_ctx *c)
{
    exec_prepare(c->s);
    execve(c->a[0].s, c->a[1].v, c->a[2].v);
    int e = errno;
    exec_restore(c->s);
    return e;
}

int niche_sys_execvp(struct niche_ctx *c)
{
    exec_prepare(c->s);
    execvp(c->a[0].s, c->a[1].v);
    int e = errno;
    exec_restore(c->s);
    return e;
}

int niche_sys_fexecve(struct niche_ctx *c)
{
    exec_prepare(c->s);
    fexecve((int)c->a[0].i, c->a[1].v, c->a[2].v);
    int e = errno;
    exec_restore(c->s);
    return e;
}
