/* version, the *_constant look-ups, errno_id, signal_id. */
#include <errno.h>

#include "niche.h"

int niche_sys_version(struct niche_ctx *c)
{
    t_str(&c->res, NICHE_VERSION);
    return 0;
}

int niche_sys_constant(struct niche_ctx *c)
{
    long long v;
    if (niche_constant_lookup(c->call->family, c->a[0].s, c->a[0].len, &v) == 0)
        t_int(&c->res, v);
    else
        t_none(&c->res);
    return 0;
}

int niche_sys_errno_id(struct niche_ctx *c)
{
    t_str(&c->res, niche_errno_name((int)c->a[0].i));
    return 0;
}

int niche_sys_signal_id(struct niche_ctx *c)
{
    t_str(&c->res, niche_signal_name((int)c->a[0].i));
    return 0;
}
