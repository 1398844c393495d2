/* Calls taking C structs: alloc, ioctl, prctl, seccomp, ptrace. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_alloc(struct niche_ctx *c)
{
    const struct niche_arg *a = &c->a[0];
    t_list(&c->res, 2);
    t_bytes(&c->res, a->kind == A_INT ? NULL : a->buf, a->kind == A_INT ? 0 : a->len);
    t_cstruct(&c->res, a);
    return 0;
}

int niche_sys_ioctl(struct niche_ctx *c)
{
    const struct niche_arg *a = &c->a[2];
    long r = ioctl((int)c->a[0].i, (unsigned long)c->a[1].i, cs_word(a));
    if (r < 0)
        return errno;
    t_list(&c->res, 2);
    t_int(&c->res, r);
    if (a->kind == A_INT)
        t_bytes(&c->res, "", 0);
    else
        t_cstruct(&c->res, a);
    return 0;
}

int niche_sys_prctl(struct niche_ctx *c)
{
    int r = prctl((int)c->a[0].i, cs_word(&c->a[1]), cs_word(&c->a[2]), cs_word(&c->a[3]),
                  cs_word(&c->a[4]));
    if (r < 0)
        return errno;
    t_list(&c->res, 5);
    t_int(&c->res, r);
    for (int i = 1; i <= 4; i++)
        t_cstruct(&c->res, &c->a[i]);
    return 0;
}

int niche_sys_seccomp(struct niche_ctx *c)
{
    const struct niche_arg *a = &c->a[2];
    unsigned long prog = cs_word(a);
    struct sock_fprog fp;
    if (a->kind == A_BUF) { /* raw sock_filter instructions: wrap them */
        if (a->len == 0 || a->len % sizeof(struct sock_filter) || a->len / 8 > 0xffff)
            return EINVAL;
        fp.len = a->len / sizeof(struct sock_filter);
        fp.filter = (struct sock_filter *)a->buf;
        prog = (unsigned long)&fp;
    }
    return niche_ok(c, syscall(SYS_seccomp, (unsigned)c->a[0].i, (unsigned)c->a[1].i, prog));
}

int niche_sys_ptrace(struct niche_ctx *c)
{
    errno = 0;
    long r = ptrace((int)c->a[0].i, (pid_t)c->a[1].i, (void *)cs_word(&c->a[2]),
                    (void *)cs_word(&c->a[3]));
    if (r == -1 && errno)
        return errno;
    t_list(&c->res, 3);
    t_int(&c->res, r);
    t_cstruct(&c->res, &c->a[2]);
    t_cstruct(&c->res, &c->a[3]);
    return 0;
}

int niche_sys_setproctitle(struct niche_ctx *c)
{
    return niche_ok(c, prctl(PR_SET_NAME, c->a[0].s, 0, 0, 0));
}
