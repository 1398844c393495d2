/* The event loop every process of the tree runs: frames from the parent,
 * each child's control socket and stdio pipes, and signals (signalfd). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "niche.h"

enum { K_IN = 1, K_SIG, K_CTL, K_OUT, K_ERR, K_STDIN, K_WATCH, K_WATCH_ATTR, K_SIGSYS = NICHE_K_SIGSYS };

static uint64_t tag(pid_t pid, int kind) { return (uint64_t)(uint32_t)pid << 8 | kind; }

static void ep_ctl(struct niche_state *s, int op, int fd, uint32_t ev, uint64_t data)
{
    struct epoll_event e = {.events = ev, .data.u64 = data};
    (void)epoll_ctl(s->ep, op, fd, &e);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- children: a dense array for iteration, a hash for PID look-up ---- */

static size_t hslot(struct niche_state *s, pid_t pid)
{
    return ((uint32_t)pid * 2654435761u) & (s->hcap - 1);
}

struct child *child_find(struct niche_state *s, pid_t pid)
{
    if (!s->hcap)
        return NULL;
    for (size_t i = hslot(s, pid); s->htab[i]; i = (i + 1) & (s->hcap - 1))
        if (s->htab[i]->pid == pid)
            return s->htab[i];
    return NULL;
}

static void hput(struct niche_state *s, struct child *c)
{
    size_t i = hslot(s, c->pid);
    while (s->htab[i])
        i = (i + 1) & (s->hcap - 1);
    s->htab[i] = c;
}

struct child *child_add(struct niche_state *s, pid_t pid)
{
    if ((s->nchild + 1) * 2 > s->hcap) {
        free(s->htab);
        s->hcap = s->hcap ? s->hcap * 2 : 64;
        s->htab = xmalloc(s->hcap * sizeof(*s->htab));
        memset(s->htab, 0, s->hcap * sizeof(*s->htab));
        for (size_t i = 0; i < s->nchild; i++)
            hput(s, s->child[i]);
    }
    if (s->nchild == s->ccap) {
        s->ccap = s->ccap ? s->ccap * 2 : 16;
        s->child = xrealloc(s->child, s->ccap * sizeof(*s->child));
    }
    struct child *c = xmalloc(sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->pid = pid;
    c->ctl = c->in = c->out = c->err = -1;
    c->idx = s->nchild;
    s->child[s->nchild++] = c;
    hput(s, c);
    return c;
}

static void child_free(struct niche_state *s, struct child *c)
{
    /* backward-shift deletion keeps every probe sequence unbroken */
    size_t mask = s->hcap - 1, i = hslot(s, c->pid);
    while (s->htab[i] != c)
        i = (i + 1) & mask;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!s->htab[j])
            break;
        size_t k = hslot(s, s->htab[j]->pid);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            s->htab[i] = s->htab[j];
            i = j;
        }
    }
    s->htab[i] = NULL;
    struct child *last = s->child[--s->nchild];
    s->child[c->idx] = last;
    last->idx = c->idx;
    int fds[] = {c->ctl, c->in, c->out, c->err};
    for (size_t k = 0; k < 4; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    nbuf_free(&c->rbuf);
    nbuf_free(&c->wq);
    nbuf_free(&c->iq);
    free(c->acks);
    free(c->inflight);
    free(c);
}

/* --- calls in flight: answered by the child, or failed when it dies --- */

void child_inflight_add(struct child *c, uint32_t id)
{
    if (c->ninflight == c->icap) {
        c->icap = c->icap ? c->icap * 2 : 4;
        c->inflight = xrealloc(c->inflight, c->icap * sizeof(*c->inflight));
    }
    c->inflight[c->ninflight++] = id;
}

static void inflight_done(struct child *c, uint32_t id)
{
    for (size_t i = c->ninflight; i-- > 0;) /* the newest is the likeliest */
        if (c->inflight[i] == id) {
            c->inflight[i] = c->inflight[--c->ninflight];
            return;
        }
}

/* --- down: frames and stdin data, never blocking the loop ------------ */

static void ctl_events(struct niche_state *s, struct child *c)
{
    uint32_t ev = EPOLLIN | (c->wq.len > c->wq_off ? EPOLLOUT : 0);
    ep_ctl(s, EPOLL_CTL_MOD, c->ctl, ev, tag(c->pid, K_CTL));
}

static void ctl_flush(struct niche_state *s, struct child *c)
{
    while (c->wq_off < c->wq.len) {
        ssize_t n = send(c->ctl, c->wq.p + c->wq_off, c->wq.len - c->wq_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                c->wq_off = c->wq.len; /* child gone: its GONE frame fails the calls */
            break;
        }
        c->wq_off += n;
    }
    if (c->wq_off == c->wq.len)
        c->wq.len = c->wq_off = 0;
    ctl_events(s, c);
}

void child_queue_down(struct niche_state *s, struct child *c, const void *hdr, size_t hlen,
                      const void *rest, size_t rlen)
{
    size_t done = 0;
    if (c->wq.len == c->wq_off) {
        struct iovec iov[2] = {{(void *)hdr, hlen}, {(void *)rest, rlen}};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t n;
        do
            n = sendmsg(c->ctl, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN)
            return;
        done = n < 0 ? 0 : (size_t)n;
        if (done == hlen + rlen)
            return;
    }
    if (done < hlen)
        nbuf_put(&c->wq, (const char *)hdr + done, hlen - done);
    size_t r0 = done > hlen ? done - hlen : 0;
    nbuf_put(&c->wq, (const char *)rest + r0, rlen - r0);
    ctl_events(s, c);
}

static void stdin_fail(struct niche_state *s, struct child *c, int err)
{
    for (size_t i = 0; i < c->nacks; i++)
        up_reply_errno(s, c->acks[i].id, err);
    c->nacks = 0;
    c->iq.len = c->iq_off = 0;
    if (c->in >= 0)
        close(c->in);
    c->in = -1;
    c->in_watched = 0;
}

void child_stdin_kick(struct niche_state *s, struct child *c)
{
    while (c->iq_off < c->iq.len) {
        ssize_t n = write(c->in, c->iq.p + c->iq_off, c->iq.len - c->iq_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A full pipe: the program is fed a stream. A bigger pipe means
             * fewer wake-ups of it and of us; only for streams, so idle
             * children do not count against pipe-user-pages-soft. */
            if (errno == EAGAIN && !c->in_grown) {
                c->in_grown = 1;
                if (fcntl(c->in, F_SETPIPE_SZ, NICHE_STDIN_PIPE) > 0)
                    continue;
            }
            if (errno == EAGAIN)
                break;
            stdin_fail(s, c, errno);
            return;
        }
        c->iq_off += n;
        c->in_written += n;
    }
    size_t k = 0;
    for (; k < c->nacks && c->acks[k].end <= c->in_written; k++) {
        struct nbuf none = {0};
        t_none(&none);
        up_reply(s, c->acks[k].id, ST_OK, &none);
        nbuf_free(&none);
    }
    if (k) { /* acks may be NULL when none were ever queued */
        memmove(c->acks, c->acks + k, (c->nacks - k) * sizeof(*c->acks));
        c->nacks -= k;
    }
    int pending = c->iq_off < c->iq.len;
    if (!pending) {
        c->iq.len = c->iq_off = 0;
        if (c->eof_pending) {
            if (c->in_watched)
                ep_ctl(s, EPOLL_CTL_DEL, c->in, 0, 0);
            close(c->in);
            c->in = -1;
            c->in_watched = 0;
            return;
        }
    }
    if (pending != c->in_watched) {
        ep_ctl(s, pending ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->in, EPOLLOUT, tag(c->pid, K_STDIN));
        c->in_watched = pending;
    }
}

/* --- up: what children write ----------------------------------------- */

static void ctl_eof(struct niche_state *s, struct child *c)
{
    close(c->ctl);
    c->ctl = -1;
    c->wq.len = c->wq_off = 0;
    c->execd = !c->exited;
    if (c->exec_pending) {
        /* close-on-exec closed the socket: the exec succeeded */
        struct nbuf none = {0};
        t_none(&none);
        up_reply(s, c->exec_id, ST_OK, &none);
        nbuf_free(&none);
        inflight_done(c, c->exec_id);
        c->exec_pending = 0;
    }
}

/* Read what the child's control socket holds and forward whole frames.
 * Returns 2 after reading data, 1 when there was none, 0 at end of file. */
static int ctl_read(struct niche_state *s, struct child *c)
{
    nbuf_reserve(&c->rbuf, NICHE_READ_CHUNK);
    ssize_t n = recv(c->ctl, c->rbuf.p + c->rbuf.len, c->rbuf.cap - c->rbuf.len, MSG_DONTWAIT);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 1 : (ctl_eof(s, c), 0);
    if (n == 0) {
        ctl_eof(s, c);
        return 0;
    }
    c->rbuf.len += n;
    size_t off = 0;
    uint32_t flen;
    int r;
    while ((r = frame_header_ok(c->rbuf.p + off, c->rbuf.len - off, 0, &flen)) == 1) {
        const unsigned char *f = c->rbuf.p + off;
        if (f[2] == F_REPLY && flen >= NICHE_HDR + 4u * f[3] + 4) {
            uint32_t id = get_u32(f + NICHE_HDR + 4 * f[3]);
            inflight_done(c, id);
            if (c->exec_pending && f[3] == 0 && id == c->exec_id)
                c->exec_pending = 0; /* the exec failed and the child said why */
        }
        up_forward(s, c->pid, f, flen);
        off += flen;
    }
    if (r < 0) { /* cannot happen with our own children; do not loop on it */
        up_protoerr(s, "corrupt frame from a child: dropped");
        off = c->rbuf.len;
    }
    memmove(c->rbuf.p, c->rbuf.p + off, c->rbuf.len - off);
    c->rbuf.len -= off;
    return 2;
}

static void output_pause(struct niche_state *s, struct child *c, int pause)
{
    if (c->out_paused == pause)
        return;
    c->out_paused = pause;
    int fds[2] = {c->out, c->err}, kinds[2] = {K_OUT, K_ERR};
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            ep_ctl(s, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, fds[i], EPOLLIN, tag(c->pid, kinds[i]));
}

void child_watch_output(struct niche_state *s, struct child *c)
{
    output_pause(s, c, c->flowcontrol == 0);
}

/* Returns 2 after reading data, 1 when there was none, 0 at end of file. */
static int output_read(struct niche_state *s, struct child *c, int kind)
{
    static unsigned char buf[NICHE_READ_CHUNK];
    int *fd = kind == K_OUT ? &c->out : &c->err;
    ssize_t n = read(*fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 1;
    if (n <= 0) {
        close(*fd); /* also leaves the epoll set */
        *fd = -1;
        return 0;
    }
    int32_t pid = c->pid;
    up_frame(s, kind == K_OUT ? F_STDOUT : F_STDERR, &pid, 1, buf, n);
    if (c->flowcontrol > 0 && --c->flowcontrol == 0)
        output_pause(s, c, 1);
    return 2;
}

static void child_finish(struct niche_state *s, struct child *c)
{
    /* Everything the child wrote before it died goes up before its exit. */
    while (c->ctl >= 0 && ctl_read(s, c) == 2)
        ;
    while (c->out >= 0 && output_read(s, c, K_OUT) == 2)
        ;
    while (c->err >= 0 && output_read(s, c, K_ERR) == 2)
        ;
    stdin_fail(s, c, EPIPE);
    struct nbuf ev = {0};
    t_list(&ev, 2);
    int send = 0;
    if (WIFEXITED(c->status)) {
        t_str(&ev, "exit_status");
        t_int(&ev, WEXITSTATUS(c->status));
        send = s->exit_status;
    } else {
        t_str(&ev, "termsig");
        t_str(&ev, niche_signal_name(WTERMSIG(c->status)));
        send = s->termsig;
    }
    if (send)
        up_event(s, F_EVENT, c->pid, &ev);
    /* Calls it (or its subtree) took and never answered: it died with them. */
    for (size_t i = 0; i < c->ninflight; i++)
        up_reply(s, c->inflight[i], ST_EXITED, &ev);
    c->ninflight = 0;
    up_event(s, F_GONE, c->pid, &ev);
    nbuf_free(&ev);
    child_free(s, c);
}

static void reap(struct niche_state *s)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct child *c = child_find(s, pid);
        if (!c)
            continue;
        c->exited = 1;
        c->status = st;
        child_finish(s, c);
    }
}

/* From the signalfd, or from the SIGSYS handler's pipe (call/signal.c). */
static void on_signal(struct niche_state *s, int fd)
{
    struct signalfd_siginfo si[8];
    ssize_t n = read(fd, si, sizeof(si));
    for (ssize_t i = 0; i < n / (ssize_t)sizeof(si[0]); i++) {
        if (si[i].ssi_signo == SIGCHLD) {
            reap(s);
            continue;
        }
        struct nbuf ev = {0};
        t_list(&ev, 3);
        t_str(&ev, "signal");
        t_str(&ev, niche_signal_name(si[i].ssi_signo));
        t_bytes(&ev, &si[i], sizeof(si[i]));
        up_event(s, F_EVENT, 0, &ev);
        nbuf_free(&ev);
    }
}

/* --- watched descriptors --------------------------------------------- */

int watch_add(struct niche_state *s, int fd)
{
    if (fd < 0 || fd == s->in_fd || fd == s->out_fd || fd == s->ep || fd == s->sfd)
        return EBADF;
    for (size_t i = 0; i < s->nwatch; i++)
        if (s->watch[i] == fd)
            return 0;
    /* A sysfs attribute (a GPIO's value) is a regular file that is always
     * readable and signals a change with POLLPRI: watch for that and read
     * it from the start. Anything else is read as a stream. */
    struct stat st;
    int attr = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    struct epoll_event e = {.events = attr ? EPOLLPRI : EPOLLIN,
                            .data.u64 = tag(fd, attr ? K_WATCH_ATTR : K_WATCH)};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) < 0)
        return errno; /* EPERM: a regular file cannot be watched */
    if (s->nwatch == s->wcap) {
        s->wcap = s->wcap ? s->wcap * 2 : 8;
        s->watch = xrealloc(s->watch, s->wcap * sizeof(*s->watch));
    }
    s->watch[s->nwatch++] = fd;
    return 0;
}

int watch_del(struct niche_state *s, int fd)
{
    for (size_t i = 0; i < s->nwatch; i++)
        if (s->watch[i] == fd) {
            ep_ctl(s, EPOLL_CTL_DEL, fd, 0, 0);
            s->watch[i] = s->watch[--s->nwatch];
            return 0;
        }
    return ENOENT;
}

static void on_watch(struct niche_state *s, int fd, int attr)
{
    static unsigned char buf[NICHE_READ_CHUNK];
    ssize_t n = attr ? pread(fd, buf, sizeof(buf), 0) : read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    struct nbuf ev = {0};
    t_list(&ev, 3);
    t_str(&ev, "fd");
    t_int(&ev, fd);
    t_bytes(&ev, buf, n > 0 ? n : 0);
    up_event(s, F_EVENT, 0, &ev);
    nbuf_free(&ev);
    if (n <= 0) /* end of file (or an error): the watch ends */
        watch_del(s, fd);
}

/* --- frames from the parent ------------------------------------------ */

static void on_input(struct niche_state *s)
{
    nbuf_reserve(&s->in, NICHE_MAX_FRAME); /* a whole stdin frame in one read */
    ssize_t n = read(s->in_fd, s->in.p + s->in.len, s->in.cap - s->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        begin_shutdown(s, 0);
        return;
    }
    s->in.len += n;
    uint32_t flen;
    while (s->in_off < s->in.len && !s->shutting_down) {
        const unsigned char *p = s->in.p + s->in_off;
        size_t avail = s->in.len - s->in_off;
        int r = frame_header_ok(p, avail, 1, &flen);
        if (r == 0)
            break;
        if (r < 0) {
            if (!s->resyncing)
                up_protoerr(s, "bad frame header: skipping to the next frame");
            s->resyncing = 1;
            const unsigned char *m = memchr(p + 1, 'N', avail - 1);
            s->in_off = m ? (size_t)(m - s->in.p) : s->in.len;
            continue;
        }
        s->resyncing = 0;
        s->in_off += flen; /* before handling: a fork's child starts afresh */
        handle_down(s, p, flen);
    }
    if (s->in_off == s->in.len || s->shutting_down) {
        s->in.len = s->in_off = 0;
    } else if (s->in_off > 0) {
        memmove(s->in.p, s->in.p + s->in_off, s->in.len - s->in_off);
        s->in.len -= s->in_off;
        s->in_off = 0;
    }
}

/* --- lifecycle ------------------------------------------------------- */

void sig_update(struct niche_state *s)
{
    sigprocmask(SIG_SETMASK, &s->sigmask, NULL);
    s->sfd = signalfd(s->sfd, &s->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
}

void exec_prepare(struct niche_state *s)
{
    up_flush(s); /* replies to the calls before this one */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, s->sigdisp[SIGPIPE] == 1 ? SIG_IGN : SIG_DFL);
}

void exec_restore(struct niche_state *s)
{
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_SETMASK, &s->sigmask, NULL);
}

static void loop_setup(struct niche_state *s)
{
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->sfd = -1;
    sig_update(s);
    if (s->ep < 0 || s->sfd < 0)
        _exit(111);
    ep_ctl(s, EPOLL_CTL_ADD, s->in_fd, EPOLLIN, tag(0, K_IN));
    ep_ctl(s, EPOLL_CTL_ADD, s->sfd, EPOLLIN, tag(0, K_SIG));
    sigsys_setup(s); /* a forked child: its own SIGSYS pipe */
}

void niche_init(struct niche_state *s, int in_fd, int out_fd, int depth)
{
    s->in_fd = in_fd;
    s->out_fd = out_fd;
    s->depth = depth;
    loop_setup(s);
}

/* In the new child: forget the parent's world, keep its options. */
static void child_start(struct niche_state *s, int ctl, int in, int out, int err)
{
    close(s->ep);
    close(s->sfd);
    if (s->in_fd > 2)
        close(s->in_fd);
    if (s->out_fd > 2 && s->out_fd != s->in_fd)
        close(s->out_fd);
    while (s->nchild)
        child_free(s, s->child[0]);
    free(s->child);
    free(s->htab);
    s->child = NULL;
    s->htab = NULL;
    s->ccap = s->hcap = 0;
    s->in.len = s->in_off = 0;
    s->upq.len = 0; /* the parent's frames, for the parent's link */
    s->resyncing = 0;
    s->nwatch = 0; /* the parent's watches stay the parent's */
    for (size_t i = 0; i < NICHE_FILTER_BYTES; i++) /* inherited, never lifted */
        s->filter[i] |= s->filter_sub[i];
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    close(in);
    close(out);
    close(err);
    niche_init(s, ctl, ctl, s->depth + 1);
    /* Tell the parent we hold none of its descriptors any more. */
    while (send(ctl, "R", 1, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static int cloexec_pipe(int p[2], int nonblock_end)
{
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fcntl(p[nonblock_end], F_SETFL, O_NONBLOCK);
    return 0;
}

/* fork (flags == 0) or clone a child running this loop. Returns 0 and the
 * PID in the parent, NICHE_CHILD in the child, or an errno value. */
int spawn(struct niche_state *s, unsigned long flags, pid_t *pidp)
{
    if (s->depth >= s->maxforkdepth || (int)s->nchild >= s->maxchild)
        return EAGAIN;
    int sv[2], pin[2], pout[2], perr[2], e;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return errno;
    if (cloexec_pipe(pin, 1) < 0)
        goto fail1;
    if (cloexec_pipe(pout, 0) < 0)
        goto fail2;
    if (cloexec_pipe(perr, 0) < 0)
        goto fail3;
    /* Raw clone: no stack switch, fork semantics plus namespace flags. */
    pid_t pid = flags ? (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0) : fork();
    if (pid < 0)
        goto fail4;
    if (pid == 0) {
        close(sv[0]);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        child_start(s, sv[1], pin[0], pout[1], perr[1]);
        return NICHE_CHILD;
    }
    close(sv[1]);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    /* Wait until the child has let go of our descriptors: a fork returns a
     * process that is in its loop, and nothing of ours leaks if it stops. */
    char ready;
    while (recv(sv[0], &ready, 1, 0) < 0 && errno == EINTR)
        ;
    struct child *c = child_add(s, pid);
    c->ctl = sv[0];
    c->in = pin[1];
    c->out = pout[0];
    c->err = perr[0];
    c->flowcontrol = s->flowcontrol;
    c->signaloneof = s->signaloneof;
    ep_ctl(s, EPOLL_CTL_ADD, c->ctl, EPOLLIN, tag(pid, K_CTL));
    c->out_paused = 1;
    child_watch_output(s, c);
    *pidp = pid;
    return 0;
fail4:
    e = errno;
    close(perr[0]);
    close(perr[1]);
    errno = e;
fail3:
    e = errno;
    close(pout[0]);
    close(pout[1]);
    errno = e;
fail2:
    e = errno;
    close(pin[0]);
    close(pin[1]);
    errno = e;
fail1:
    e = errno;
    close(sv[0]);
    close(sv[1]);
    return e;
}

void begin_shutdown(struct niche_state *s, int code)
{
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    s->exit_code = code;
    ep_ctl(s, EPOLL_CTL_DEL, s->in_fd, 0, 0);
    for (size_t i = 0; i < s->nchild; i++) {
        struct child *c = s->child[i];
        stdin_fail(s, c, EPIPE);
        if (c->ctl >= 0)
            shutdown(c->ctl, SHUT_WR); /* the child shuts down in turn */
        else if (!c->exited && c->signaloneof > 0)
            kill(c->pid, c->signaloneof);
    }
    s->deadline_ms = now_ms() + NICHE_GRACE_MS;
}

void niche_loop(struct niche_state *s)
{
    struct epoll_event ev[64];
    int killed = 0;
    for (;;) {
        up_flush(s);
        if (s->shutting_down && s->nchild == 0) {
            if (s->reexec)
                port_reexec(s); /* a new session: a fresh port (frame.c hello) */
            _exit(s->exit_code);
        }
        int timeout = -1;
        if (s->shutting_down) {
            long long left = s->deadline_ms - now_ms();
            if (left <= 0) {
                /* Stragglers: exec'd programs first, then stuck loops. */
                for (size_t i = 0; i < s->nchild; i++)
                    if (killed || s->child[i]->ctl < 0)
                        kill(s->child[i]->pid, SIGKILL);
                killed = 1;
                s->deadline_ms = now_ms() + NICHE_GRACE_MS;
                left = NICHE_GRACE_MS;
            }
            timeout = (int)left;
        }
        int n = epoll_wait(s->ep, ev, 64, timeout);
        for (int i = 0; i < n; i++) {
            int kind = ev[i].data.u64 & 0xff;
            pid_t pid = (pid_t)(ev[i].data.u64 >> 8);
            if (kind == K_IN) {
                on_input(s);
                continue;
            }
            if (kind == K_SIG || kind == K_SIGSYS) {
                on_signal(s, kind == K_SIG ? s->sfd : s->sys_rfd);
                continue;
            }
            if (kind == K_WATCH || kind == K_WATCH_ATTR) {
                on_watch(s, (int)pid, kind == K_WATCH_ATTR);
                continue;
            }
            struct child *c = child_find(s, pid);
            if (!c)
                continue; /* finished earlier in this batch */
            if (kind == K_CTL) {
                if (c->ctl >= 0 && (ev[i].events & EPOLLOUT))
                    ctl_flush(s, c);
                if (c->ctl >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    ctl_read(s, c);
            } else if (kind == K_OUT || kind == K_ERR) {
                if ((kind == K_OUT ? c->out : c->err) >= 0)
                    output_read(s, c, kind);
            } else if (kind == K_STDIN && c->in >= 0) {
                child_stdin_kick(s, c);
            }
        }
    }
}
