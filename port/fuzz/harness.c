/* libFuzzer harness for the port's decoders, built from the port's own
 * sources (main.c with its main() renamed: libFuzzer has its own). The first input byte picks a target:
 *   even: a stream of down frames fed through the loop's stdin path
 *         (on_input: frame_header_ok, resync after garbage, handle_down)
 *         with every call filtered and no child, so no frame can reach a
 *         call with side effects (fork, exec, kill...): they end as
 *         "filtered" or "no such child" replies written to /dev/null;
 *   odd:  byte 1 picks a call of niche_calls[]; the rest is its argument
 *         terms for decode_args (cstructs re-encoded with t_cstruct); the
 *         side-effect-free @constant calls also run.
 * NICHE_FUZZ_SEEDS=DIR writes a seed corpus of valid inputs for every call
 * of port/calls.spec, built with the port's own term encoders, and exits. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* on_input is static: compile the loop in this unit to reach it. */
#include "../loop.c"

static struct niche_state st;
static int wfd;

static void setup(void)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK) < 0 || fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0)
        abort();
    st.in_fd = p[0];
    wfd = p[1];
    st.out_fd = open("/dev/null", O_WRONLY);
    st.ep = st.sfd = -1;
    st.maxchild = 16;
    memset(st.filter, 0xff, sizeof(st.filter)); /* every call denied here */
}

static void frames(const uint8_t *d, size_t n)
{
    if (n > NICHE_MAX_FRAME || (n && write(wfd, d, n) != (ssize_t)n))
        return; /* longer than one read of the loop: nothing new to reach */
    if (n)
        on_input(&st);
    st.in.len = st.in_off = 0;
    st.resyncing = st.shutting_down = 0;
}

static const struct niche_call *call_at(unsigned i)
{
    for (unsigned k = 0; k < NICHE_NCALLS; k++, i++)
        if (niche_calls[i % NICHE_NCALLS].name)
            return &niche_calls[i % NICHE_NCALLS];
    return NULL;
}

static void args(const uint8_t *d, size_t n)
{
    if (n < 1)
        return;
    struct niche_ctx c = {.s = &st, .call = call_at(d[0])};
    char *arena = NULL;
    if (decode_args(&c, d + 1, n - 1, &arena) == 0) {
        for (size_t i = 0; c.call->sig[i]; i++)
            if (c.call->sig[i] == 'a')
                t_cstruct(&c.res, &c.a[i]);
        if (c.call->flags & NICHE_F_CONSTANT)
            c.call->fn(&c);
    }
    free_args(&c);
    free(arena);
    nbuf_free(&c.res);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (!wfd)
        setup();
    if (n == 0)
        return 0;
    if (d[0] & 1)
        args(d + 1, n - 1);
    else
        frames(d + 1, n - 1);
    return 0;
}

/* --- seeds ------------------------------------------------------------ */

static void seed_args(struct nbuf *b, const struct niche_call *call, int variant)
{
    for (size_t i = 0; call->sig[i]; i++) {
        switch (call->sig[i]) {
        case 'i':
        case 'l':
            t_int(b, variant);
            break;
        case 's':
            t_str(b, variant ? "/tmp" : "x");
            break;
        case 'b':
            t_str(b, "data");
            break;
        case 'v':
            t_list(b, 2);
            t_str(b, "sh");
            t_str(b, "-c");
            break;
        case 'k': {
            const char *name = niche_families[(int)call->afam[i]][0].name;
            if (variant) { /* a list of a name and an int */
                t_list(b, 2);
                nbuf_u8(b, 'c');
                nbuf_u32(b, strlen(name));
                nbuf_put(b, name, strlen(name));
                t_int(b, 0);
            } else {
                t_str(b, name);
            }
            break;
        }
        case 'I':
        case 'T':
            t_list(b, 2);
            t_int(b, 1);
            t_int(b, 2);
            break;
        case 'a':
            if (!variant) {
                t_int(b, 0);
                break;
            }
            t_list(b, 3); /* bytes, ("ptr", n), ("ptr", bytes) */
            t_bytes(b, "\0\0\0\0", 4);
            t_list(b, 2);
            t_str(b, "ptr");
            t_int(b, 8);
            t_list(b, 2);
            t_str(b, "ptr");
            t_str(b, "abc");
            break;
        }
    }
}

static void seed_write(const char *dir, const char *name, int v, const struct nbuf *b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-%d", dir, name, v);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f))
        exit(1);
}

static void seed_frame(struct nbuf *b, int type, uint32_t pid, const struct nbuf *body)
{
    unsigned char h[NICHE_HDR] = {'N', 'C', type, pid ? 1 : 0};
    put_u32(h + 4, body->len + (pid ? 4 : 0));
    nbuf_put(b, h, sizeof(h));
    if (pid)
        nbuf_u32(b, pid);
    nbuf_put(b, body->p, body->len);
}

static void seeds(const char *dir)
{
    int n = 0;
    for (unsigned k = 0; k < NICHE_NCALLS; k++) {
        const struct niche_call *call = &niche_calls[k];
        if (!call->name)
            continue;
        for (int v = 0; v < 2; v++) {
            struct nbuf a = {0}, b = {0}, body = {0};
            seed_args(&a, call, v);
            nbuf_u8(&b, 1); /* args target, then the call's index */
            nbuf_u8(&b, k);
            nbuf_put(&b, a.p, a.len);
            seed_write(dir, call->name, v, &b);
            b.len = 0; /* a CALL frame, at depth 0 or to a child */
            nbuf_u8(&b, 0);
            if (v) /* garbage before it: the loop resyncs */
                nbuf_put(&b, "xNzz", 4);
            nbuf_u32(&body, k);
            nbuf_u16(&body, k);
            nbuf_put(&body, a.p, a.len);
            seed_frame(&b, F_CALL, v ? 4242 : 0, &body);
            seed_write(dir, call->name, 2 + v, &b);
            nbuf_free(&a);
            nbuf_free(&b);
            nbuf_free(&body);
            n += 2;
        }
    }
    struct nbuf b = {0}, empty = {0};
    nbuf_u8(&b, 0);
    seed_frame(&b, F_HELLO, 0, &empty);
    seed_write(dir, "hello", 0, &b);
    nbuf_free(&b);
    printf("seeds: %d inputs in %s\n", n + 1, dir);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (getenv("NICHE_FUZZ_SEEDS"))
        seeds(getenv("NICHE_FUZZ_SEEDS"));
    return 0;
}
