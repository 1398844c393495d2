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
    size_t done = 0, len = c->a[0].len;
    if (ch->iq.len == ch->iq_off) { /* nothing queued: try the pipe first */
        ssize_t n = write(ch->in, c->a[0].s, len);
        if (n > 0) {
            done = n;
            ch->in_written += n;
        }
    }
    nbuf_put(&ch->iq, c->a[0].s + done, len - done);
    ch->in_queued += len;
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
