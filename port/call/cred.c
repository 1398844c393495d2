/* Credentials: UIDs, GIDs, supplementary groups. */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_getuid(struct niche_ctx *c)
{
    t_int(&c->res, getuid());
    return 0;
}

int niche_sys_getgid(struct niche_ctx *c)
{
    t_int(&c->res, getgid());
    return 0;
}

int niche_sys_setuid(struct niche_ctx *c) { return niche_ok(c, setuid((uid_t)c->a[0].i)); }

int niche_sys_setgid(struct niche_ctx *c) { return niche_ok(c, setgid((gid_t)c->a[0].i)); }

int niche_sys_setresuid(struct niche_ctx *c)
{
    return niche_ok(c, setresuid((uid_t)c->a[0].i, (uid_t)c->a[1].i, (uid_t)c->a[2].i));
}

int niche_sys_setresgid(struct niche_ctx *c)
{
    return niche_ok(c, setresgid((gid_t)c->a[0].i, (gid_t)c->a[1].i, (gid_t)c->a[2].i));
}

static void ids3(struct niche_ctx *c, unsigned a, unsigned b, unsigned d)
{
    t_list(&c->res, 3);
    t_int(&c->res, a);
    t_int(&c->res, b);
    t_int(&c->res, d);
}

int niche_sys_getresuid(struct niche_ctx *c)
{
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) < 0)
        return errno;
    ids3(c, r, e, s);
    return 0;
}

int niche_sys_getresgid(struct niche_ctx *c)
{
    gid_t r, e, s;
    if (getresgid(&r, &e, &s) < 0)
        return errno;
    ids3(c, r, e, s);
    return 0;
}

int niche_sys_getgroups(struct niche_ctx *c)
{
    int n = getgroups(0, NULL);
    if (n < 0)
        return errno;
    gid_t *g = xmalloc((n + 1) * sizeof(gid_t));
    n = getgroups(n, g);
    int e = errno;
    if (n >= 0) {
        t_list(&c->res, n);
        for (int i = 0; i < n; i++)
            t_int(&c->res, g[i]);
    }
    free(g);
    return n < 0 ? e : 0;
}

int niche_sys_setgroups(struct niche_ctx *c)
{
    size_t n = c->a[0].n;
    gid_t *g = xmalloc((n + 1) * sizeof(gid_t));
    for (size_t i = 0; i < n; i++)
        g[i] = (gid_t)c->a[0].iv[i];
    int r = setgroups(n, g);
    int e = errno;
    free(g);
    errno = e;
    return niche_ok(c, r);
}
