/* Resources, priorities, process groups and sessions. */
#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_getrlimit(struct niche_ctx *c)
{
    struct rlimit rl;
    if (getrlimit((int)c->a[0].i, &rl) < 0)
        return errno;
    t_list(&c->res, 2);
    t_int(&c->res, (int64_t)rl.rlim_cur);
    t_int(&c->res, (int64_t)rl.rlim_max);
    return 0;
}

int niche_sys_setrlimit(struct niche_ctx *c)
{
    if (c->a[1].n != 2)
        return EINVAL;
    struct rlimit rl = {(rlim_t)c->a[1].iv[0], (rlim_t)c->a[1].iv[1]};
    if (setrlimit((int)c->a[0].i, &rl) < 0)
        return errno;
    if (c->a[0].i == RLIMIT_NOFILE) /* as alcove: the children must fit */
        c->s->maxchild = niche_maxchild();
    t_none(&c->res);
    return 0;
}

int niche_sys_getpriority(struct niche_ctx *c)
{
    errno = 0;
    int p = getpriority((int)c->a[0].i, (id_t)c->a[1].i);
    if (p == -1 && errno)
        return errno;
    t_int(&c->res, p);
    return 0;
}

int niche_sys_setpriority(struct niche_ctx *c)
{
    return niche_ok(c, setpriority((int)c->a[0].i, (id_t)c->a[1].i, (int)c->a[2].i));
}

int niche_sys_getpgrp(struct niche_ctx *c)
{
    t_int(&c->res, getpgrp());
    return 0;
}

int niche_sys_setpgid(struct niche_ctx *c)
{
    return niche_ok(c, setpgid((pid_t)c->a[0].i, (pid_t)c->a[1].i));
}

int niche_sys_getsid(struct niche_ctx *c)
{
    pid_t s = getsid((pid_t)c->a[0].i);
    if (s < 0)
        return errno;
    t_int(&c->res, s);
    return 0;
}

int niche_sys_setsid(struct niche_ctx *c)
{
    pid_t s = setsid();
    if (s < 0)
        return errno;
    t_int(&c->res, s);
    return 0;
}
