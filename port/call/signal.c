/* sigaction: sig_dfl, sig_ign, or sig_info (trapped through the loop's
 * signalfd and sent up as a ("signal", name, siginfo) event). */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "niche.h"

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
    if (want == 2) {
        sigaddset(&s->sigmask, sig);
        signal(sig, SIG_DFL);
    } else {
        sigdelset(&s->sigmask, sig);
        /* The loop itself always ignores SIGPIPE; exec restores this choice. */
        if (sig != SIGPIPE && signal(sig, want ? SIG_IGN : SIG_DFL) == SIG_ERR)
            return errno;
    }
    s->sigdisp[sig] = want;
    sig_update(s);
    t_str(&c->res, handler_names[old]);
    return 0;
}
