/* Files and descriptors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "niche.h"

#define MAX_READ (1 << 20)

int niche_sys_open(struct niche_ctx *c)
{
    return niche_int(c, open(c->a[0].s, (int)c->a[1].i, (mode_t)c->a[2].i));
}

int niche_sys_close(struct niche_ctx *c)
{
    int fd = (int)c->a[0].i;
    struct niche_state *s = c->s;
    /* The loop's own descriptors, and its children's, are not the caller's
     * to close: closing them would cut the loop off from its children. */
    if (fd == s->in_fd || fd == s->out_fd || fd == s->ep || fd == s->sfd)
        return EBADF;
    for (size_t i = 0; i < s->nchild; i++) {
        const struct child *ch = s->child[i];
        if (fd == ch->ctl || fd == ch->in || fd == ch->out || fd == ch->err)
            return EBADF;
    }
    watch_del(c->s, fd); /* a closed descriptor is no longer watched */
    return niche_ok(c, close(fd));
}

int niche_sys_watch(struct niche_ctx *c)
{
    int e = watch_add(c->s, (int)c->a[0].i);
    if (e)
        return e;
    t_none(&c->res);
    return 0;
}

int niche_sys_unwatch(struct niche_ctx *c)
{
    int e = watch_del(c->s, (int)c->a[0].i);
    if (e)
        return e;
    t_none(&c->res);
    return 0;
}

int niche_sys_read(struct niche_ctx *c)
{
    int64_t n = c->a[1].i;
    if (n < 0)
        return EINVAL;
    if (n > MAX_READ)
        n = MAX_READ;
    unsigned char *buf = xmalloc(n);
    ssize_t r = read((int)c->a[0].i, buf, n);
    int e = errno;
    if (r >= 0)
        t_bytes(&c->res, buf, r);
    free(buf);
    return r < 0 ? e : 0;
}

int niche_sys_write(struct niche_ctx *c)
{
    return niche_int(c, write((int)c->a[0].i, c->a[1].s, c->a[1].len));
}

int niche_sys_lseek(struct niche_ctx *c)
{
    return niche_ok(c, lseek((int)c->a[0].i, (off_t)c->a[1].i, (int)c->a[2].i) < 0 ? -1 : 0);
}

int niche_sys_fcntl(struct niche_ctx *c)
{
    return niche_int(c, fcntl((int)c->a[0].i, (int)c->a[1].i, (long)c->a[2].i));
}

int niche_sys_chmod(struct niche_ctx *c) { return niche_ok(c, chmod(c->a[0].s, (mode_t)c->a[1].i)); }

int niche_sys_chown(struct niche_ctx *c)
{
    return niche_ok(c, chown(c->a[0].s, (uid_t)c->a[1].i, (gid_t)c->a[2].i));
}

int niche_sys_mkdir(struct niche_ctx *c) { return niche_ok(c, mkdir(c->a[0].s, (mode_t)c->a[1].i)); }

int niche_sys_mkfifo(struct niche_ctx *c) { return niche_ok(c, mkfifo(c->a[0].s, (mode_t)c->a[1].i)); }

int niche_sys_rmdir(struct niche_ctx *c) { return niche_ok(c, rmdir(c->a[0].s)); }

int niche_sys_link(struct niche_ctx *c) { return niche_ok(c, link(c->a[0].s, c->a[1].s)); }

int niche_sys_symlink(struct niche_ctx *c) { return niche_ok(c, symlink(c->a[0].s, c->a[1].s)); }

int niche_sys_unlink(struct niche_ctx *c) { return niche_ok(c, unlink(c->a[0].s)); }

int niche_sys_readdir(struct niche_ctx *c)
{
    DIR *d = opendir(c->a[0].s);
    if (!d)
        return errno;
    struct nbuf names = {0};
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        t_str(&names, e->d_name);
        n++;
    }
    closedir(d);
    t_list(&c->res, n);
    nbuf_put(&c->res, names.p, names.len);
    nbuf_free(&names);
    return 0;
}
