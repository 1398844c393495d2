/* cstruct arguments (docs/cstruct.md): an int, a buffer, or a C struct
 * laid out from a list of inline bytes and ("ptr", ...) items, each ptr
 * pointing at memory allocated for the call. After the call the buffers
 * go back to the caller, so out-parameters work at any depth. */
#include <stdlib.h>
#include <string.h>

#include "niche.h"

#define CS_MAX (1 << 20) /* bytes a cstruct may allocate */

static int rd_len(const unsigned char *p, size_t len, size_t *off, uint32_t *n)
{
    if (len - *off < 4)
        return -1;
    *n = get_u32(p + *off);
    *off += 4;
    return *n <= len - *off ? 0 : -1;
}

int cs_decode(struct niche_arg *g, const unsigned char *p, size_t len, size_t *off)
{
    if (*off >= len)
        return -1;
    int tag = p[(*off)++];
    uint32_t n;
    if (tag == 'n') {
        g->kind = A_INT;
        g->i = 0;
        return 0;
    }
    if (tag == 'i') {
        if (len - *off < 8)
            return -1;
        uint64_t u = 0;
        for (int k = 0; k < 8; k++)
            u = u << 8 | p[*off + k];
        *off += 8;
        g->kind = A_INT;
        g->i = (int64_t)u;
        return 0;
    }
    if (tag == 'b') {
        if (rd_len(p, len, off, &n) < 0)
            return -1;
        g->kind = A_BUF;
        g->buf = xmalloc(n + 1);
        memcpy(g->buf, p + *off, n);
        g->len = n;
        *off += n;
        return 0;
    }
    if (tag != 'l' || len - *off < 4)
        return -1;
    uint32_t cnt = get_u32(p + *off);
    *off += 4;
    if (cnt > (len - *off) / 5)
        return -1;
    g->kind = A_STRUCT;
    g->items = xmalloc((cnt ? cnt : 1) * sizeof(*g->items));
    memset(g->items, 0, (cnt ? cnt : 1) * sizeof(*g->items));
    size_t size = 0, alloc = 0;
    size_t start = *off;
    /* first pass: sizes; the items' data stay in the frame until the copy */
    for (uint32_t k = 0; k < cnt; k++, g->nitems++) {
        struct cs_item *it = &g->items[k];
        if (*off >= len)
            return -1;
        int t = p[(*off)++];
        it->off = size;
        if (t == 'b') {
            if (rd_len(p, len, off, &n) < 0)
                return -1;
            it->len = n;
            size += n;
            *off += n;
            continue;
        }
        if (t != 'l' || rd_len(p, len, off, &n) < 0 || n != 1 || *off >= len)
            return -1;
        it->ptr = 1;
        size += sizeof(void *);
        t = p[(*off)++];
        if (t == 'i') {
            if (len - *off < 8)
                return -1;
            uint64_t u = 0;
            for (int b = 0; b < 8; b++)
                u = u << 8 | p[*off + b];
            *off += 8;
            if (u > CS_MAX)
                return -1;
            it->len = u;
        } else if (t == 'b') {
            if (rd_len(p, len, off, &n) < 0)
                return -1;
            it->len = n;
            *off += n;
        } else {
            return -1;
        }
        if ((alloc += it->len) > CS_MAX)
            return -1;
    }
    if (size > CS_MAX)
        return -1;
    g->buf = xmalloc(size + 1);
    memset(g->buf, 0, size + 1);
    g->len = size;
    /* second pass: copy */
    size_t o = start;
    for (uint32_t k = 0; k < cnt; k++) {
        struct cs_item *it = &g->items[k];
        int t = p[o++];
        if (t == 'b') {
            o += 4;
            memcpy(g->buf + it->off, p + o, it->len);
            o += it->len;
            continue;
        }
        o += 4;
        t = p[o++];
        it->mem = xmalloc(it->len + 1);
        memset(it->mem, 0, it->len + 1);
        if (t == 'i') {
            o += 8;
        } else {
            o += 4;
            memcpy(it->mem, p + o, it->len);
            o += it->len;
        }
        memcpy(g->buf + it->off, &it->mem, sizeof(void *));
    }
    return 0;
}

unsigned long cs_word(const struct niche_arg *a)
{
    return a->kind == A_INT ? (unsigned long)a->i : (unsigned long)a->buf;
}

void t_cstruct(struct nbuf *b, const struct niche_arg *a)
{
    if (a->kind == A_INT) {
        t_int(b, a->i);
        return;
    }
    if (a->kind == A_BUF) {
        t_bytes(b, a->buf, a->len);
        return;
    }
    t_list(b, a->nitems);
    for (size_t k = 0; k < a->nitems; k++) {
        const struct cs_item *it = &a->items[k];
        if (!it->ptr) {
            t_bytes(b, a->buf + it->off, it->len);
            continue;
        }
        t_list(b, 2);
        t_str(b, "ptr");
        t_bytes(b, it->mem, it->len);
    }
}
