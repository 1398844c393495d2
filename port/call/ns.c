/* Namespaces and the file system view: chroot, pivot_root, mount, umount,
 * setns, unshare, host names. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_chroot(struct niche_ctx *c) { return niche_ok(c, chroot(c->a[0].s)); }

int niche_sys_pivot_root(struct niche_ctx *c)
{
    return niche_ok(c, (int)syscall(SYS_pivot_root, c->a[0].s, c->a[1].s));
}

int niche_sys_mount(struct niche_ctx *c)
{
    const char *data = c->a[4].len ? c->a[4].s : NULL;
    return niche_ok(c, mount(c->a[0].s, c->a[1].s, c->a[2].s, (unsigned long)c->a[3].i, data));
}

int niche_sys_umount(struct niche_ctx *c) { return niche_ok(c, umount(c->a[0].s)); }

int niche_sys_umount2(struct niche_ctx *c) { return niche_ok(c, umount2(c->a[0].s, (int)c->a[1].i)); }

int niche_sys_setns(struct niche_ctx *c) { return niche_ok(c, setns((int)c->a[0].i, (int)c->a[1].i)); }

int niche_sys_unshare(struct niche_ctx *c) { return niche_ok(c, unshare((int)c->a[0].i)); }

int niche_sys_sethostname(struct niche_ctx *c)
{
    return niche_ok(c, sethostname(c->a[0].s, c->a[0].len));
}

int niche_sys_gethostname(struct niche_ctx *c)
{
    char name[HOST_NAME_MAX + 1] = {0};
    if (gethostname(name, sizeof(name) - 1) < 0)
        return errno;
    t_str(&c->res, name);
    return 0;
}
