/* The environment: getenv, setenv, unsetenv, clearenv, environ. */
#include <errno.h>
#include <stdlib.h>

#include "niche.h"

extern char **environ;

int niche_sys_getenv(struct niche_ctx *c)
{
    const char *v = getenv(c->a[0].s);
    if (v)
        t_str(&c->res, v);
    else
        t_none(&c->res);
    return 0;
}

int niche_sys_setenv(struct niche_ctx *c)
{
    return niche_ok(c, setenv(c->a[0].s, c->a[1].s, (int)c->a[2].i));
}

int niche_sys_unsetenv(struct niche_ctx *c)
{
    return niche_ok(c, unsetenv(c->a[0].s));
}

int niche_sys_clearenv(struct niche_ctx *c)
{
    if (clearenv() != 0)
        return ENOMEM;
    t_none(&c->res);
    return 0;
}

int niche_sys_environ(struct niche_ctx *c)
{
    uint32_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    t_list(&c->res, n);
    for (uint32_t i = 0; i < n; i++)
        t_str(&c->res, environ[i]);
    return 0;
}
