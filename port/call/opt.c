/* Port options and per-child options: getopt, setopt, cpid, getcpid, setcpid. */
#include <errno.h>
#include <string.h>

#include "niche.h"

static int *opt_field(struct niche_state *s, const char *name)
{
    if (!strcmp(name, "maxchild")) return &s->maxchild;
    if (!strcmp(name, "maxforkdepth")) return &s->maxforkdepth;
    if (!strcmp(name, "exit_status")) return &s->exit_status;
    if (!strcmp(name, "termsig")) return &s->termsig;
    if (!strcmp(name, "flowcontrol")) return &s->flowcontrol;
    if (!strcmp(name, "signaloneof")) return &s->signaloneof;
    return NULL;
}

int niche_sys_getopt(struct niche_ctx *c)
{
    int *f = opt_field(c->s, c->a[0].s);
    if (f)
        t_int(&c->res, *f);
    else
        t_none(&c->res);
    return 0;
}

static int opt_valid(const char *name, int64_t v)
{
    if (!strcmp(name, "exit_status") || !strcmp(name, "termsig"))
        return v == 0 || v == 1;
    if (!strcmp(name, "flowcontrol"))
        return v >= -1 && v <= 0x7fffffff;
    if (!strcmp(name, "signaloneof"))
        return v >= 0 && v < 65;
    if (!strcmp(name, "maxforkdepth"))
        return v >= 0 && v <= 255; /* the chain length fits in a byte */
    return v >= 0 && v <= 0x7fffffff;
}

int niche_sys_setopt(struct niche_ctx *c)
{
    int *f = opt_field(c->s, c->a[0].s);
    int ok = f && opt_valid(c->a[0].s, c->a[1].i);
    if (ok)
        *f = (int)c->a[1].i;
    t_int(&c->res, ok);
    return 0;
}

int niche_sys_cpid(struct niche_ctx *c)
{
    struct niche_state *s = c->s;
    t_list(&c->res, s->nchild);
    for (size_t i = 0; i < s->nchild; i++) {
        struct child *ch = s->child[i];
        t_list(&c->res, 7);
        t_int(&c->res, ch->pid);
        t_int(&c->res, ch->flowcontrol);
        t_int(&c->res, ch->signaloneof);
        t_int(&c->res, ch->ctl);
        t_int(&c->res, ch->in);
        t_int(&c->res, ch->out);
        t_int(&c->res, ch->err);
    }
    return 0;
}

int niche_sys_getcpid(struct niche_ctx *c)
{
    struct child *ch = child_find(c->s, (pid_t)c->a[0].i);
    const char *o = c->a[1].s;
    int v;
    if (!ch) {
        t_none(&c->res);
        return 0;
    }
    if (!strcmp(o, "pid")) v = ch->pid;
    else if (!strcmp(o, "flowcontrol")) v = ch->flowcontrol;
    else if (!strcmp(o, "signaloneof")) v = ch->signaloneof;
    else if (!strcmp(o, "fdctl")) v = ch->ctl;
    else if (!strcmp(o, "stdin")) v = ch->in;
    else if (!strcmp(o, "stdout")) v = ch->out;
    else if (!strcmp(o, "stderr")) v = ch->err;
    else {
        t_none(&c->res);
        return 0;
    }
    t_int(&c->res, v);
    return 0;
}

int niche_sys_setcpid(struct niche_ctx *c)
{
    struct child *ch = child_find(c->s, (pid_t)c->a[0].i);
    const char *o = c->a[1].s;
    int64_t v = c->a[2].i;
    int ok = 0;
    if (ch && !strcmp(o, "flowcontrol") && opt_valid(o, v)) {
        ch->flowcontrol = (int)v;
        child_watch_output(c->s, ch);
        ok = 1;
    } else if (ch && !strcmp(o, "signaloneof") && opt_valid(o, v)) {
        ch->signaloneof = (int)v;
        ok = 1;
    }
    t_int(&c->res, ok);
    return 0;
}
