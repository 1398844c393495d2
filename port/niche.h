/* niche-port: an event loop on stdin/stdout that forks chains of children
 * running the same loop and makes system calls in any of them on request.
 * The wire protocol is in docs/protocol.md; the calls in port/calls.spec. */
#pragma once

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "calls.h"

#define NICHE_VERSION "0.1.0"
#define NICHE_PROTO 1
#define NICHE_HDR 8
#define NICHE_MAX_FRAME (256 * 1024 + 1024) /* frames sent down */
#define NICHE_READ_CHUNK 65536               /* stdout/stderr read size */
#define NICHE_STDIN_PIPE (1 << 20)           /* a child's stdin pipe once a stream fills it */
#define NICHE_UPQ_FRAME 4096                 /* frames up at most this big are queued */
#define NICHE_UPQ_MAX 65536                  /* ... into a queue of at most this (up_flush) */
#define NICHE_MAXARGS 8
#define NICHE_GRACE_MS 5000 /* before SIGKILL of exec'd children at shutdown */

enum { F_CALL = 0x01, F_HELLO = 0x02 };
enum {
    F_UP_HELLO = 0x81, F_REPLY, F_STDOUT, F_STDERR, F_EVENT, F_GONE, F_PROTOERR
};
enum { ST_OK = 0, ST_ERRNO, ST_BADPID, ST_UNDEF, ST_BADARG, ST_EXITED };

/* Handlers return 0 (ok, result term in ctx->res), an errno value, or: */
#define NICHE_DEFER (-1)  /* the reply is sent later (stdin) */
#define NICHE_FAILED (-2) /* ctx->status and ctx->res already set */
#define NICHE_CHILD (-3)  /* we are the new child: do not reply */

#define NICHE_F_PARENT 1
#define NICHE_F_EXEC 2
#define NICHE_F_CONSTANT 4
#define NICHE_F_UNDEFINED 8
#define NICHE_FILTER_BYTES ((NICHE_NCALLS + 7) / 8)

struct nbuf {
    unsigned char *p;
    size_t len, cap;
};

struct niche_constant {
    const char *name; /* lower case */
    long long value;
};

/* A cstruct argument (docs/cstruct.md): an int, a buffer, or a struct
 * whose ("ptr", ...) items point at memory allocated for the call. */
enum { A_INT, A_BUF, A_STRUCT, A_NONE };
struct cs_item {
    int ptr;
    size_t off, len; /* in the struct buffer; len of the pointed memory for ptr */
    unsigned char *mem;
};

struct niche_arg {
    int64_t i;
    const char *s; /* str (NUL-terminated) or bytes */
    size_t len;
    char **v; /* strv, NULL-terminated */
    size_t n; /* items of strv or ints */
    int64_t *iv; /* ints, pair, timeval */
    int kind;    /* cstruct and timeval: A_* */
    unsigned char *buf;
    struct cs_item *items;
    size_t nitems;
};

struct niche_call {
    const char *name;
    const char *sig; /* one char per argument: i s b v k */
    int (*fn)(struct niche_ctx *);
    int flags;
    int family;                      /* @constant family */
    signed char afam[NICHE_MAXARGS]; /* family of each 'k' argument */
    const char *platform;            /* @undefined: where the call exists */
};

struct ack {
    uint32_t id;
    uint64_t end; /* reply once this many bytes were written to the pipe */
};

struct child {
    pid_t pid;
    int ctl;            /* control socket; -1 once exec'd or gone */
    int in, out, err;   /* our ends of the program's stdio pipes */
    int flowcontrol;    /* -1 unlimited, else reads left */
    int signaloneof;
    int exited, status; /* reaped, wait status */
    int execd;          /* control socket closed while alive */
    int exec_pending;
    uint32_t exec_id;
    int eof_pending; /* close stdin once the queue drains */
    int in_watched, out_paused;
    int in_grown; /* its stdin pipe was made NICHE_STDIN_PIPE big (or tried) */
    size_t idx; /* in niche_state.child */
    struct nbuf rbuf;   /* partial frames read from ctl */
    struct nbuf wq;     /* frames queued down to ctl */
    size_t wq_off;
    struct nbuf iq; /* stdin data queued for the program */
    size_t iq_off;
    uint64_t in_written, in_queued;
    struct ack *acks;
    size_t nacks, acap;
    uint32_t *inflight; /* ids of calls sent down to it, not answered yet */
    size_t ninflight, icap;
};

struct niche_state {
    int depth;
    int maxchild, maxforkdepth, exit_status, termsig, flowcontrol, signaloneof;
    int in_fd, out_fd; /* link to the parent (the port: stdin, stdout) */
    int ep, sfd;
    sigset_t sigmask; /* signals read from sfd: SIGCHLD + trapped */
    unsigned char sigdisp[65]; /* per signal: 0 dfl, 1 ign, 2 info */
    struct nbuf in;            /* frames from the parent */
    struct nbuf upq;           /* frames up not written yet (frame.c up_flush) */
    size_t in_off;
    struct child **child; /* dense array */
    size_t nchild, ccap;
    struct child **htab; /* pid -> child, open addressing, linear probing */
    size_t hcap;
    int resyncing;
    int shutting_down, exit_code, uplink_dead;
    int *watch; /* descriptors watched by the loop (watch/unwatch) */
    size_t nwatch, wcap;
    unsigned char filter[NICHE_FILTER_BYTES];     /* denied here */
    unsigned char filter_sub[NICHE_FILTER_BYTES]; /* denied in later children */
    long long deadline_ms;
    int used, reexec; /* served a call; re-exec at the end of the shutdown */
    uint32_t nonce;   /* of the session HELLO the re-exec'd port answers */
    int sys_rfd;      /* SIGSYS records from the handler; 0: none (call/signal.c) */
};

struct niche_ctx {
    struct niche_state *s;
    const struct niche_call *call;
    uint32_t id;
    struct child *target; /* @parent calls: the child whose pipes we hold */
    struct niche_arg a[NICHE_MAXARGS];
    int status;      /* for NICHE_FAILED */
    struct nbuf res; /* one term: the result, or the error message */
};

extern const struct niche_call niche_calls[NICHE_NCALLS];
extern const struct niche_constant *const niche_families[NICHE_NFAMILIES];
extern const char *const niche_family_names[NICHE_NFAMILIES];

/* buf.c */
void nbuf_reserve(struct nbuf *b, size_t extra);
void nbuf_put(struct nbuf *b, const void *p, size_t n);
void nbuf_u8(struct nbuf *b, unsigned v);
void nbuf_u16(struct nbuf *b, unsigned v);
void nbuf_u32(struct nbuf *b, uint32_t v);
void nbuf_free(struct nbuf *b);
void t_int(struct nbuf *b, int64_t v);
void t_bytes(struct nbuf *b, const void *p, size_t n);
void t_str(struct nbuf *b, const char *s);
void t_list(struct nbuf *b, uint32_t n);
void t_none(struct nbuf *b);
uint32_t get_u32(const unsigned char *p);
void put_u32(unsigned char *p, uint32_t v);
void *xmalloc(size_t n);
int niche_ok(struct niche_ctx *c, int r);         /* None, or errno when r < 0 */
int niche_int(struct niche_ctx *c, long long r);  /* r, or errno when r < 0 */
void *xrealloc(void *p, size_t n);

/* constant.c */
int niche_constant_lookup(int family, const char *name, size_t len, long long *val);
const char *niche_constant_name(int family, long long value);
const char *niche_errno_name(int e);
const char *niche_signal_name(int sig);

/* frame.c */
void up_frame(struct niche_state *s, int type, const int32_t *chain, int depth,
              const void *body, size_t len);
void up_reply(struct niche_state *s, uint32_t id, int status, const struct nbuf *term);
void up_reply_errno(struct niche_state *s, uint32_t id, int err);
void up_reply_msg(struct niche_state *s, uint32_t id, int status, const char *msg);
void up_protoerr(struct niche_state *s, const char *msg);
void up_event(struct niche_state *s, int type, pid_t pid, const struct nbuf *term);
void up_forward(struct niche_state *s, pid_t pid, const unsigned char *frame, size_t len);
void up_flush(struct niche_state *s);
int frame_header_ok(const unsigned char *p, size_t avail, int down, uint32_t *len);
void handle_down(struct niche_state *s, const unsigned char *f, size_t len);
void hello_reply(struct niche_state *s, int session, uint32_t nonce);
int decode_args(struct niche_ctx *c, const unsigned char *p, size_t len, char **arena);
void free_args(struct niche_ctx *c);

/* cstruct.c */
int cs_decode(struct niche_arg *g, const unsigned char *p, size_t len, size_t *off);
unsigned long cs_word(const struct niche_arg *a);
void t_cstruct(struct nbuf *b, const struct niche_arg *a);

/* loop.c */
void niche_loop(struct niche_state *s) __attribute__((noreturn));
void niche_init(struct niche_state *s, int in_fd, int out_fd, int depth);
struct child *child_find(struct niche_state *s, pid_t pid);
struct child *child_add(struct niche_state *s, pid_t pid);
void child_queue_down(struct niche_state *s, struct child *c, const void *hdr, size_t hlen,
                      const void *rest, size_t rlen);
void child_inflight_add(struct child *c, uint32_t id);
void child_stdin_kick(struct niche_state *s, struct child *c);
void child_watch_output(struct niche_state *s, struct child *c);
void begin_shutdown(struct niche_state *s, int code);
int watch_add(struct niche_state *s, int fd);
int watch_del(struct niche_state *s, int fd);
void sig_update(struct niche_state *s);
void exec_prepare(struct niche_state *s);
void exec_restore(struct niche_state *s);
int spawn(struct niche_state *s, unsigned long flags, pid_t *pidp);
int niche_maxchild(void);

/* call/signal.c */
#define NICHE_K_SIGSYS 9 /* the epoll tag of s->sys_rfd (loop.c) */
int sigsys_setup(struct niche_state *s);

/* main.c */
void port_reexec(struct niche_state *s) __attribute__((noreturn));
