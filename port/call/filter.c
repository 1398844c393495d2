/* filter: deny calls in this process and, separately, in the processes it
 * forks later. Bits are only ever added. */
#include <errno.h>
#include <stdio.h>

#include "niche.h"

static void or_bits(unsigned char *dst, const struct niche_arg *a)
{
    for (size_t i = 0; i < a->len && i < NICHE_FILTER_BYTES; i++)
        dst[i] |= (unsigned char)a->s[i];
}

int niche_sys_filter(struct niche_ctx *c)
{
    if (c->a[0].len > NICHE_FILTER_BYTES || c->a[1].len > NICHE_FILTER_BYTES)
        return EINVAL;
    or_bits(c->s->filter, &c->a[0]);
    or_bits(c->s->filter_sub, &c->a[1]);
    t_none(&c->res);
    return 0;
}

int niche_sys_undefined(struct niche_ctx *c)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s only: not supported on Linux", c->call->platform);
    t_str(&c->res, msg);
    c->status = ST_UNDEF;
    return NICHE_FAILED;
}
