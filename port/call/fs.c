/* The working directory: chdir, getcwd. */
#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_chdir(struct niche_ctx *c)
{
    return niche_ok(c, chdir(c->a[0].s));
}

int niche_sys_getcwd(struct niche_ctx *c)
{
    char buf[PATH_MAX];
    if (!getcwd(buf, sizeof(buf)))
        return errno;
    t_str(&c->res, buf);
    return 0;
}
