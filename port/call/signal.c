/* sigaction: sig_dfl, sig_ign, or sig_info (trapped through the loop's
 * signalfd and sent up as a ("signal", name, siginfo) event). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <ucontext.h>
#include <unistd.h>

#include "niche.h"

#ifndef SYS_SECCOMP /* musl has it; glibc (the sanitizer build) only in asm/siginfo.h */
#define SYS_SECCOMP 1
#endif

/* SIGSYS cannot go through the signalfd: the kernel forces a seccomp trap's
 * SIGSYS (blocked means reset to SIG_DFL and death). So sig_info on SIGSYS
 * installs a handler that writes the signalfd record into a pipe the loop
 * reads, and makes the trapped call fail with ENOSYS, so the loop goes on. */
static int sigsys_wfd = -1;

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
    int e = errno;
    struct signalfd_siginfo f;
    memset(&f, 0, sizeof(f));
    f.ssi_signo = sig;
    f.ssi_errno = si->si_errno;
    f.ssi_code = si->si_code;
    if (si->si_code == SYS_SECCOMP) {
        f.ssi_call_addr = (uint64_t)(uintptr_t)si->si_call_addr;
        f.ssi_syscall = si->si_syscall;
        f.ssi_arch = si->si_arch;
        ucontext_t *uc = ucv; /* the skipped call's return value */
#if defined(__x86_64__)
        uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__i386__)
        uc->uc_mcontext.gregs[REG_EAX] = -ENOSYS;
#elif defined(__aarch64__)
        uc->uc_mcontext.regs[0] = (unsigned long)-ENOSYS;
#elif defined(__arm__)
        uc->uc_mcontext.arm_r0 = (unsigned long)-ENOSYS;
#elif defined(__riscv)
        uc->uc_mcontext.__gregs[10] = (unsigned long)-ENOSYS; /* a0 */
#else
        (void)uc; /* elsewhere the call returns what the register held */
#endif
    } else {
        f.ssi_pid = si->si_pid;
        f.ssi_uid = si->si_uid;
    }
    if (sigsys_wfd >= 0 && write(sigsys_wfd, &f, sizeof(f)) < 0)
        ; /* the loop is behind by a pipe full: this one is dropped */
    errno = e;
}

/* Each loop's own pipe (a forked child must not share its parent's). */
int sigsys_setup(struct niche_state *s)
{
    if (s->sys_rfd) {
        close(s->sys_rfd);
        close(sigsys_wfd);
        s->sys_rfd = 0;
        sigsys_wfd = -1;
    }
    if (s->sigdisp[SIGSYS] != 2)
        return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return errno;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = NICHE_K_SIGSYS};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, p[0], &e) < 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        return err;
    }
    s->sys_rfd = p[0];
    sigsys_wfd = p[1];
    return 0;
}

static const char *const handler_names[] = {"sig_dfl", "sig_ign", "sig_info"};

int niche_sys_sigaction(struct niche_ctx *c)
{
    struct niche_state *s = c->s;
    int sig = (int)c->a[0].i;
    const char *h = c->a[1].s;
    if (sig <= 0 || sig >= (int)sizeof(s->sigdisp))
        return EINVAL;
    int old = s->sigdisp[sig], want;
    if (!*h) {
        t_str(&c->res, handler_names[old]);
        return 0;
    }
    for (want = 0; want < 3 && strcmp(h, handler_names[want]); want++)
        ;
    /* SIGCHLD runs the loop itself; SIGKILL and SIGSTOP cannot be caught. */
    if (want == 3 || sig == SIGCHLD || sig == SIGKILL || sig == SIGSTOP)
        return EINVAL;
    if (want == 2 && sig == SIGSYS) {
        if (!s->sys_rfd) {
            s->sigdisp[sig] = 2;
            int err = sigsys_setup(s);
            if (err) {
                s->sigdisp[sig] = old;
                return err;
            }
        }
        struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO | SA_RESTART};
        sigaction(SIGSYS, &sa, NULL);
        sigdelset(&s->sigmask, sig);
    } else if (want == 2) {
        sigaddset(&s->sigmask, sig);
        signal(sig, SIG_DFL);
    } else {
        sigdelset(&s->sigmask, sig);
        /* The loop itself always ignores SIGPIPE; exec restores this choice. */
        if (sig != SIGPIPE && signal(sig, want ? SIG_IGN : SIG_DFL) == SIG_ERR)
            return errno;
    }
    s->sigdisp[sig] = want;
    if (sig == SIGSYS && want != 2 && s->sys_rfd)
        sigsys_setup(s); /* closes the pipe */
    sig_update(s);
    t_str(&c->res, handler_names[old]);
    return 0;
}
