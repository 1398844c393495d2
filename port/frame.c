/* Frames up and down (docs/protocol.md), argument decoding and dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "niche.h"

static void up_write_all(struct niche_state *s, struct iovec *iov, int n)
{
    while (n > 0 && !s->uplink_dead) {
        ssize_t w = writev(s->out_fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* The parent is gone: nothing we write can be delivered. */
            s->uplink_dead = 1;
            s->upq.len = 0;
            begin_shutdown(s, 0);
            return;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= w;
        }
    }
}

/* Small frames up are gathered while the loop works through what one
 * wake-up brought, and leave in one write (up_flush, before the loop waits
 * again): a pipelined batch of calls costs one write up, not one per reply.
 * A big frame (stdio data) goes out at once, behind what is queued. */
void up_flush(struct niche_state *s)
{
    if (!s->upq.len)
        return;
    struct iovec iov = {s->upq.p, s->upq.len};
    up_write_all(s, &iov, 1);
    s->upq.len = 0;
}

/* One frame up: its head and its body. */
static void up_writev(struct niche_state *s, const struct iovec frame[2])
{
    if (s->uplink_dead)
        return;
    size_t total = frame[0].iov_len + frame[1].iov_len;
    if (total <= NICHE_UPQ_FRAME && s->upq.len + total <= NICHE_UPQ_MAX) {
        nbuf_put(&s->upq, frame[0].iov_base, frame[0].iov_len);
        nbuf_put(&s->upq, frame[1].iov_base, frame[1].iov_len);
        return;
    }
    struct iovec all[3] = {{s->upq.p, s->upq.len}, frame[0], frame[1]};
    up_write_all(s, all, 3);
    s->upq.len = 0;
}

static void mkhdr(unsigned char *h, int type, int depth, size_t len)
{
    h[0] = 'N';
    h[1] = 'C';
    h[2] = type;
    h[3] = depth;
    put_u32(h + 4, len);
}

void up_frame(struct niche_state *s, int type, const int32_t *chain, int depth,
              const void *body, size_t len)
{
    unsigned char h[NICHE_HDR + 4 * 2];
    mkhdr(h, type, depth, 4 * depth + len);
    for (int i = 0; i < depth; i++)
        put_u32(h + NICHE_HDR + 4 * i, chain[i]);
    struct iovec iov[2] = {{h, NICHE_HDR + 4 * depth}, {(void *)body, len}};
    up_writev(s, iov);
}

void up_reply(struct niche_state *s, uint32_t id, int status, const struct nbuf *term)
{
    unsigned char h[NICHE_HDR + 5];
    mkhdr(h, F_REPLY, 0, 5 + term->len);
    put_u32(h + NICHE_HDR, id);
    h[NICHE_HDR + 4] = status;
    struct iovec iov[2] = {{h, sizeof(h)}, {term->p, term->len}};
    up_writev(s, iov);
}

void up_reply_msg(struct niche_state *s, uint32_t id, int status, const char *msg)
{
    struct nbuf t = {0};
    t_str(&t, msg);
    up_reply(s, id, status, &t);
    nbuf_free(&t);
}

void up_reply_errno(struct niche_state *s, uint32_t id, int err)
{
    up_reply_msg(s, id, ST_ERRNO, niche_errno_name(err));
}

void up_protoerr(struct niche_state *s, const char *msg)
{
    up_frame(s, F_PROTOERR, NULL, 0, msg, strlen(msg));
}

void up_event(struct niche_state *s, int type, pid_t pid, const struct nbuf *term)
{
    int32_t chain[1] = {pid};
    up_frame(s, type, chain, pid ? 1 : 0, term->p, term->len);
}

/* A frame read from child `pid`: prefix its PID to the chain. */
void up_forward(struct niche_state *s, pid_t pid, const unsigned char *f, size_t len)
{
    unsigned char h[NICHE_HDR + 4];
    mkhdr(h, f[2], f[3] + 1, len - NICHE_HDR + 4);
    put_u32(h + NICHE_HDR, pid);
    struct iovec iov[2] = {{h, sizeof(h)}, {(void *)(f + NICHE_HDR), len - NICHE_HDR}};
    up_writev(s, iov);
}

/* 1: a whole valid frame of *len bytes; 0: need more; -1: not a header. */
int frame_header_ok(const unsigned char *p, size_t avail, int down, uint32_t *len)
{
    if (avail < 2)
        return (avail == 0 || p[0] == 'N') ? 0 : -1;
    if (p[0] != 'N' || p[1] != 'C')
        return -1;
    if (avail < NICHE_HDR)
        return 0;
    int type = p[2];
    uint32_t body = get_u32(p + 4);
    if (down ? (type != F_CALL && type != F_HELLO) : (type < F_UP_HELLO || type > F_PROTOERR))
        return -1;
    if ((uint32_t)p[3] * 4 > body || (down && body > NICHE_MAX_FRAME - NICHE_HDR))
        return -1;
    *len = NICHE_HDR + body;
    return avail >= *len ? 1 : 0;
}

/* --- arguments ------------------------------------------------------- */

struct rd {
    const unsigned char *p;
    size_t len, off;
};

static int rd_tag(struct rd *r) { return r->off < r->len ? r->p[r->off++] : -1; }

static int rd_u32(struct rd *r, uint32_t *v)
{
    if (r->len - r->off < 4)
        return -1;
    *v = get_u32(r->p + r->off);
    r->off += 4;
    return 0;
}

static int rd_i64(struct rd *r, int64_t *v)
{
    if (r->len - r->off < 8)
        return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | r->p[r->off + i];
    r->off += 8;
    *v = (int64_t)u;
    return 0;
}

static int rd_blob(struct rd *r, const unsigned char **p, uint32_t *n)
{
    if (rd_u32(r, n) < 0 || r->len - r->off < *n)
        return -1;
    *p = r->p + r->off;
    r->off += *n;
    return 0;
}

static char *arena_str(char **ap, const unsigned char *p, size_t n)
{
    char *s = *ap;
    memcpy(s, p, n);
    s[n] = 0;
    *ap += n + 1;
    return s;
}

static int badarg(struct niche_ctx *c, const char *fmt, int i)
{
    char msg[128];
    snprintf(msg, sizeof(msg), fmt, c->call->name, i + 1);
    c->status = ST_BADARG;
    c->res.len = 0;
    t_str(&c->res, msg);
    return -1;
}

/* One constant term (int, name, or list of them): OR'ed into *v. */
static int rd_const(struct niche_ctx *c, struct rd *r, int fam, int i, int64_t *v, int nest)
{
    int tag = rd_tag(r);
    const unsigned char *p;
    uint32_t n;
    int64_t x;
    long long val;
    switch (tag) {
    case 'i':
        if (rd_i64(r, &x) < 0)
            return badarg(c, "%s: argument %d: truncated", i);
        *v |= x;
        return 0;
    case 'c':
    case 'b':
        if (rd_blob(r, &p, &n) < 0)
            return badarg(c, "%s: argument %d: truncated", i);
        if (niche_constant_lookup(fam, (const char *)p, n, &val) < 0) {
            c->status = ST_ERRNO;
            c->res.len = 0;
            t_str(&c->res, "enotsup");
            return -1;
        }
        *v |= val;
        return 0;
    case 'l':
        if (nest || rd_u32(r, &n) < 0 || n > r->len)
            return badarg(c, "%s: argument %d: bad constant list", i);
        for (uint32_t k = 0; k < n; k++)
            if (rd_const(c, r, fam, i, v, 1) < 0)
                return -1;
        return 0;
    default:
        return badarg(c, "%s: argument %d: expected a constant", i);
    }
}

/* Decode the argument terms against the call's signature. Strings are
 * copied NUL-terminated into an arena the caller frees. */
int decode_args(struct niche_ctx *c, const unsigned char *p, size_t len, char **arena)
{
    const char *sig = c->call->sig;
    size_t nsig = strlen(sig);
    struct rd r = {p, len, 0};
    /* strings + NULs + pointer arrays + int arrays, each bounded by len;
     * bytes and cstructs need none (no malloc on the stdin path) */
    char *a = *arena = strpbrk(sig, "svIT") ? xmalloc(4 * len + 256 + len / 5 * sizeof(char *) * 2) : NULL;
    for (size_t i = 0; i < nsig; i++) {
        struct niche_arg *g = &c->a[i];
        const unsigned char *bp;
        uint32_t n;
        if (sig[i] == 'k') {
            g->i = 0;
            if (rd_const(c, &r, c->call->afam[i], i, &g->i, 0) < 0)
                return -1;
            continue;
        }
        int tag = rd_tag(&r);
        switch (sig[i]) {
        case 'i': /* a C int or a 32-bit unsigned: wider would be truncated */
        case 'l':
            if (tag != 'i' || rd_i64(&r, &g->i) < 0)
                return badarg(c, "%s: argument %d: expected an integer", i);
            if (sig[i] == 'i' && (g->i < INT32_MIN || g->i > (int64_t)UINT32_MAX))
                return badarg(c, "%s: argument %d: out of the 32-bit range", i);
            break;
        case 's':
        case 'b':
            if (tag != 'b' || rd_blob(&r, &bp, &n) < 0)
                return badarg(c, "%s: argument %d: expected bytes", i);
            if (sig[i] == 's' && memchr(bp, 0, n))
                return badarg(c, "%s: argument %d: NUL byte in a string", i);
            g->s = sig[i] == 's' ? arena_str(&a, bp, n) : (const char *)bp;
            g->len = n;
            break;
        case 'I':
        case 'T': {
            uint32_t cnt;
            if (sig[i] == 'T' && tag == 'n') {
                g->kind = A_NONE;
                break;
            }
            if (tag != 'l' || rd_u32(&r, &cnt) < 0 || cnt > (len - r.off) / 9)
                return badarg(c, "%s: argument %d: expected a list of integers", i);
            a = (char *)(((uintptr_t)a + 7) & ~(uintptr_t)7);
            g->iv = (int64_t *)a;
            a += (cnt + 1) * sizeof(int64_t);
            for (uint32_t k = 0; k < cnt; k++)
                if (rd_tag(&r) != 'i' || rd_i64(&r, &g->iv[k]) < 0)
                    return badarg(c, "%s: argument %d: expected a list of integers", i);
            g->n = cnt;
            if (sig[i] == 'T' && cnt != 2)
                return badarg(c, "%s: argument %d: a timeval is (sec, usec)", i);
            g->kind = A_INT;
            break;
        }
        case 'a':
            r.off--; /* the cstruct decoder reads the tag itself */
            if (cs_decode(g, r.p, r.len, &r.off) < 0)
                return badarg(c, "%s: argument %d: expected an int, bytes or a cstruct list", i);
            break;
        case 'v': {
            uint32_t cnt;
            if (tag != 'l' || rd_u32(&r, &cnt) < 0 || cnt > (len - r.off) / 5)
                return badarg(c, "%s: argument %d: expected a list of strings", i);
            /* align the pointer array inside the arena */
            a = (char *)(((uintptr_t)a + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1));
            g->v = (char **)a;
            a += (cnt + 1) * sizeof(char *);
            for (uint32_t k = 0; k < cnt; k++) {
                if (rd_tag(&r) != 'b' || rd_blob(&r, &bp, &n) < 0)
                    return badarg(c, "%s: argument %d: expected a list of strings", i);
                if (memchr(bp, 0, n))
                    return badarg(c, "%s: argument %d: NUL byte in a string", i);
                g->v[k] = arena_str(&a, bp, n);
            }
            g->v[cnt] = NULL;
            g->n = cnt;
            break;
        }
        }
    }
    if (r.off != len)
        return badarg(c, "%s: too many arguments (expected %d)", (int)nsig - 1);
    return 0;
}

void free_args(struct niche_ctx *c)
{
    for (size_t i = 0; i < NICHE_MAXARGS; i++) {
        struct niche_arg *g = &c->a[i];
        for (size_t k = 0; k < g->nitems; k++)
            free(g->items[k].mem);
        free(g->items);
        free(g->buf);
        g->items = NULL;
        g->buf = NULL;
        g->nitems = 0;
    }
}

/* --- dispatch -------------------------------------------------------- */

static void execute(struct niche_state *s, uint32_t id, unsigned callno, pid_t target,
                    const unsigned char *args, size_t alen)
{
    const struct niche_call *call =
        callno < NICHE_NCALLS && niche_calls[callno].name ? &niche_calls[callno] : NULL;
    if (!call) {
        char msg[64];
        snprintf(msg, sizeof(msg), "unknown call %u", callno);
        up_reply_msg(s, id, ST_UNDEF, msg);
        return;
    }
    struct niche_ctx c = {.s = s, .call = call, .id = id};
    if (target) {
        c.target = child_find(s, target);
        if (!c.target) {
            up_reply_msg(s, id, ST_BADPID, "no such child");
            return;
        }
    } else if (call->flags & NICHE_F_PARENT) { /* stdin, eof: a depth 0 frame has no child */
        up_reply_msg(s, id, ST_BADPID, "no such child");
        return;
    }
    /* stdin and eof carry data to an exec'd child: never filtered (as alcove) */
    if (!(call->flags & NICHE_F_PARENT) && (s->filter[callno / 8] & (1 << (callno % 8)))) {
        char msg[96];
        snprintf(msg, sizeof(msg), "filtered in this process");
        up_reply_msg(s, id, ST_UNDEF, msg);
        return;
    }
    char *arena = NULL;
    int r = decode_args(&c, args, alen, &arena) < 0 ? NICHE_FAILED : call->fn(&c);
    free_args(&c);
    free(arena);
    if (r == NICHE_CHILD) {
        nbuf_free(&c.res);
        niche_loop(s);
    }
    if (r == 0)
        up_reply(s, id, ST_OK, &c.res);
    else if (r > 0)
        up_reply_errno(s, id, r);
    else if (r == NICHE_FAILED)
        up_reply(s, id, c.status, &c.res);
    nbuf_free(&c.res);
}

/* HELLO up; a session HELLO also echoes its nonce and lists the children
 * (docs/protocol.md, "Sessions"). */
void hello_reply(struct niche_state *s, int session, uint32_t nonce)
{
    struct nbuf b = {0};
    nbuf_u16(&b, NICHE_PROTO);
    nbuf_put(&b, NICHE_VERSION, strlen(NICHE_VERSION));
    if (session) {
        nbuf_u8(&b, 0);
        nbuf_u32(&b, nonce);
        t_list(&b, s->nchild);
        for (size_t i = 0; i < s->nchild; i++)
            t_int(&b, s->child[i]->pid);
    }
    up_frame(s, F_UP_HELLO, NULL, 0, b.p, b.len);
    nbuf_free(&b);
}

/* HELLO down: u16 version [, u32 nonce, u8 mode]. A fresh session (mode 0)
 * on a port that has served calls ends the tree as end of file would, then
 * the port re-execs itself and the new process answers (main.c). Only an
 * exact session HELLO of this protocol version may end the tree: anything
 * else that looks like one is answered and ends nothing. */
static void hello(struct niche_state *s, const unsigned char *body, size_t blen)
{
    if (blen < 7) {
        hello_reply(s, 0, 0);
        return;
    }
    if (blen > 7 || body[6] > 1) {
        up_protoerr(s, "session HELLO is u16 version, u32 nonce, u8 mode (0 fresh, 1 reattach): "
                       "ignored, nothing ended");
        return;
    }
    uint32_t nonce = get_u32(body + 2);
    /* another version: answered as a reattach, so the client sees the
     * mismatch and says so, and the tree is kept */
    if (body[6] == 0 && s->used && (body[0] << 8 | body[1]) == NICHE_PROTO) {
        s->reexec = 1;
        s->nonce = nonce;
        begin_shutdown(s, 0);
        return;
    }
    hello_reply(s, 1, nonce);
}

void handle_down(struct niche_state *s, const unsigned char *f, size_t len)
{
    int type = f[2], depth = f[3];
    const unsigned char *chain = f + NICHE_HDR, *body = chain + 4 * depth;
    size_t blen = len - NICHE_HDR - 4 * depth;
    if (type == F_HELLO) {
        if (s->depth == 0 && depth == 0)
            hello(s, body, blen);
        else
            up_protoerr(s, "HELLO is only for the port process");
        return;
    }
    if (blen < 6) {
        if (blen >= 4)
            up_reply_msg(s, get_u32(body), ST_BADARG, "CALL frame cut short in its call number");
        else
            up_protoerr(s, "CALL frame shorter than its id and call number");
        return;
    }
    uint32_t id = get_u32(body);
    unsigned callno = body[4] << 8 | body[5];
    s->used = 1; /* a fresh session HELLO must now restart the port */
    const struct niche_call *call = callno < NICHE_NCALLS ? &niche_calls[callno] : NULL;
    int flags = call && call->name ? call->flags : 0;
    if (depth == 0 || (depth == 1 && (flags & NICHE_F_PARENT))) {
        execute(s, id, callno, depth ? (pid_t)get_u32(chain) : 0, body + 6, blen - 6);
        return;
    }
    pid_t pid = get_u32(chain);
    struct child *c = child_find(s, pid);
    if (!c || c->ctl < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%d is not a child in its event loop (%s)", pid,
                 !c ? "no such child" : c->exited ? "exited" : "exec'd");
        up_reply_msg(s, id, ST_BADPID, msg);
        return;
    }
    if (depth == 1 && (flags & NICHE_F_EXEC)) {
        c->exec_pending = 1;
        c->exec_id = id;
    }
    child_inflight_add(c, id);
    unsigned char h[NICHE_HDR];
    mkhdr(h, type, depth - 1, len - NICHE_HDR - 4);
    child_queue_down(s, c, h, NICHE_HDR, f + NICHE_HDR + 4, len - NICHE_HDR - 4);
}
