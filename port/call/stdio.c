/* stdin, eof: run by the parent that holds the exec'd program's pipes. */
#include <errno.h>
#include <unistd.h>

#include "niche.h"

int niche_sys_stdin(struct niche_ctx *c)
{
    struct child *ch = c->target;
    if (ch->in < 0 || ch->eof_pending)
        return EPIPE;
    if (ch->nacks == ch->acap) {
        ch->acap = ch->acap ? ch->acap * 2 : 8;
        ch->acks = xrealloc(ch->acks, ch->acap * sizeof(*ch->acks));
    }
    nbuf_put(&ch->iq, c->a[0].s, c->a[0].len);
    ch->in_queued += c->a[0].len;
    ch->acks[ch->nacks++] = (struct ack){c->id, ch->in_queued};
    child_stdin_kick(c->s, ch); /* replies once the pipe took every byte */
    return NICHE_DEFER;
}

int niche_sys_eof(struct niche_ctx *c)
{
    struct child *ch = c->target;
    t_none(&c->res);
    if (ch->in < 0)
        return 0;
    ch->eof_pending = 1;
    child_stdin_kick(c->s, ch); /* closes now, or once the queue drains */
    return 0;
}
