/* Sockets and select. */
#include <errno.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "niche.h"

int niche_sys_socket(struct niche_ctx *c)
{
    int fd = socket((int)c->a[0].i, (int)c->a[1].i, (int)c->a[2].i);
    if (fd < 0)
        return errno;
    t_int(&c->res, fd);
    return 0;
}

int niche_sys_connect(struct niche_ctx *c)
{
    const struct niche_arg *a = &c->a[1];
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    const void *addr = a->kind == A_INT ? (const void *)&unspec : a->buf;
    socklen_t len = a->kind == A_INT ? sizeof(unspec) : a->len;
    if (a->kind == A_INT && a->i != 0)
        return EINVAL;
    return niche_ok(c, connect((int)c->a[0].i, addr, len));
}

static int fdset(const struct niche_arg *a, fd_set *set, int *max)
{
    FD_ZERO(set);
    for (size_t i = 0; i < a->n; i++) {
        if (a->iv[i] < 0 || a->iv[i] >= FD_SETSIZE)
            return -1;
        FD_SET((int)a->iv[i], set);
        if (a->iv[i] > *max)
            *max = (int)a->iv[i];
    }
    return 0;
}

static void ready(struct nbuf *b, const struct niche_arg *a, fd_set *set)
{
    uint32_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += FD_ISSET((int)a->iv[i], set) != 0;
    t_list(b, n);
    for (size_t i = 0; i < a->n; i++)
        if (FD_ISSET((int)a->iv[i], set))
            t_int(b, a->iv[i]);
}

int niche_sys_select(struct niche_ctx *c)
{
    fd_set sets[3];
    int max = -1;
    for (int i = 0; i < 3; i++)
        if (fdset(&c->a[i], &sets[i], &max) < 0)
            return EBADF;
    struct timeval tv, *tvp = NULL;
    if (c->a[3].kind != A_NONE) {
        tv.tv_sec = c->a[3].iv[0];
        tv.tv_usec = c->a[3].iv[1];
        tvp = &tv;
    }
    if (select(max + 1, &sets[0], &sets[1], &sets[2], tvp) < 0)
        return errno;
    t_list(&c->res, 3);
    for (int i = 0; i < 3; i++)
        ready(&c->res, &c->a[i], &sets[i]);
    return 0;
}
