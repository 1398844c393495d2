/* Growable buffers and the term encoders of docs/protocol.md. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "niche.h"

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        _exit(111); /* out of memory: nothing sane left to do */
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        _exit(111);
    return p;
}

void nbuf_reserve(struct nbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

void nbuf_put(struct nbuf *b, const void *p, size_t n)
{
    nbuf_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void nbuf_free(struct nbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void nbuf_u8(struct nbuf *b, unsigned v)
{
    unsigned char c = v;
    nbuf_put(b, &c, 1);
}

void nbuf_u16(struct nbuf *b, unsigned v)
{
    unsigned char c[2] = {v >> 8, v};
    nbuf_put(b, c, 2);
}

void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void nbuf_u32(struct nbuf *b, uint32_t v)
{
    unsigned char c[4];
    put_u32(c, v);
    nbuf_put(b, c, 4);
}

void t_int(struct nbuf *b, int64_t v)
{
    unsigned char c[9] = {'i'};
    for (int i = 0; i < 8; i++)
        c[1 + i] = (uint64_t)v >> (56 - 8 * i);
    nbuf_put(b, c, 9);
}

void t_bytes(struct nbuf *b, const void *p, size_t n)
{
    nbuf_u8(b, 'b');
    nbuf_u32(b, n);
    nbuf_put(b, p, n);
}

void t_str(struct nbuf *b, const char *s) { t_bytes(b, s, strlen(s)); }

void t_list(struct nbuf *b, uint32_t n)
{
    nbuf_u8(b, 'l');
    nbuf_u32(b, n);
}

void t_none(struct nbuf *b) { nbuf_u8(b, 'n'); }

/* The two usual endings of a call: a system call's result, or its errno. */
int niche_ok(struct niche_ctx *c, int r)
{
    if (r < 0)
        return errno;
    t_none(&c->res);
    return 0;
}

int niche_int(struct niche_ctx *c, long long r)
{
    if (r < 0)
        return errno;
    t_int(&c->res, r);
    return 0;
}
