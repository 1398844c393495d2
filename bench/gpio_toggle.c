/* bench/gpio_toggle.c: the raw in-guest baselines of `make bench`'s GPIO rows.
 *
 * Static, no libgpiod: the same GPIO uAPI v2 ioctls libgpiod v2 makes
 * (gpiod_line_request_set_value() is one GPIO_V2_LINE_SET_VALUES_IOCTL).
 * bench/gpio_bench.py copies it into the VM guest through the port
 * (open/write/chmod) and execve()s it in a child of the guest's port.
 *
 *   gpio_toggle toggle CHIP OFFSET SLICES SLICE_MS
 *       request OFFSET of CHIP as an output (consumer "bench-raw") and toggle
 *       it with LINE_SET_VALUES for SLICES slices of SLICE_MS each; prints
 *       "slice N NS" per slice, then "level L" (the last level written).
 *   gpio_toggle pulls PATH COUNT PERIOD_US
 *       write "pull-up" / "pull-down" alternately COUNT times to PATH (a
 *       gpio-sim sim_gpioN/pull attribute), one every PERIOD_US microseconds
 *       at most (0: as fast as possible); prints
 *       "pulls COUNT NS late MAX_LATE_NS mingap MIN_GAP_NS".
 *   gpio_toggle port PORT CHIP OFFSET SLICES SLICE_MS BURST FORK SET0 SET1
 *       the local-port path (row G2g): request OFFSET as `toggle` does, keep
 *       the line's descriptor as fd 100 and start the niche-port PORT on two
 *       pipes (it inherits it). FORK, SET0 and SET1 are frames in hex, encoded
 *       by bench/gpio_bench.py with niche.protocol: a fork, and the ioctl
 *       LINE_SET_VALUES of fd 100 to 0 and 1 in the forked child (its PID and
 *       the request id are patched in here). Toggles through the port for
 *       SLICES slices one call at a time ("slice N NS"), then as many again
 *       with BURST calls written before their replies are read ("pslice N
 *       NS"), every reply checked; then "level L".
 *   gpio_toggle pingpong SLICES SLICE_MS
 *       the floor of any local client-server round trip in the guest: 22
 *       bytes to a forked child over a pipe and back over another, one at a
 *       time; prints "slice N NS" per slice.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int die(const char *what) {
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

/* OFFSET of CHIP requested as an output: the line's descriptor, or -1. */
static int request_output(const char *chip, int offset, const char *consumer) {
    int cfd = open(chip, O_RDWR | O_CLOEXEC);
    if (cfd < 0) return die("open chip"), -1;
    struct gpio_v2_line_request req;
    memset(&req, 0, sizeof req);
    req.offsets[0] = (unsigned)offset;
    req.num_lines = 1;
    strncpy(req.consumer, consumer, sizeof req.consumer - 1);
    req.config.flags = GPIO_V2_LINE_FLAG_OUTPUT;
    int r = ioctl(cfd, GPIO_V2_GET_LINE_IOCTL, &req);
    if (r < 0) die("GPIO_V2_GET_LINE_IOCTL");
    close(cfd);
    return r < 0 ? -1 : req.fd;
}

static int toggle(const char *chip, int offset, int slices, int slice_ms) {
    int lfd = request_output(chip, offset, "bench-raw");
    if (lfd < 0) return 1;
    struct gpio_v2_line_values v = {.bits = 0, .mask = 1};
    unsigned long long level = 0;
    for (int s = 0; s < slices; s++) {
        long long t0 = now_ns(), end = t0 + slice_ms * 1000000LL, t;
        long n = 0;
        do {
            for (int i = 0; i < 64; i++) {
                level ^= 1;
                v.bits = level;
                if (ioctl(lfd, GPIO_V2_LINE_SET_VALUES_IOCTL, &v) < 0) return die("SET_VALUES");
            }
            n += 64;
            t = now_ns();
        } while (t < end);
        printf("slice %ld %lld\n", n, t - t0);
    }
    printf("level %llu\n", level);
    fflush(stdout);
    close(lfd);
    return 0;
}

static int pulls(const char *path, long count, long period_us) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return die("open pull");
    /* Paced from the previous write, never faster than one per PERIOD_US: a
     * stalled vCPU must not catch up with a burst (that would be above 1 kHz). */
    long long t0 = now_ns(), prev = t0 - period_us * 1000LL, late = 0, mingap = -1;
    for (long i = 0; i < count; i++) {
        if (period_us > 0) {
            long long due = prev + period_us * 1000LL;
            struct timespec ts = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
        }
        long long t = now_ns();
        if (i > 0 && (mingap < 0 || t - prev < mingap)) mingap = t - prev;
        if (i > 0 && t - prev - period_us * 1000LL > late) late = t - prev - period_us * 1000LL;
        prev = t;
        const char *w = (i % 2 == 0) ? "pull-up" : "pull-down";
        if (pwrite(fd, w, strlen(w), 0) < 0) return die("write pull");
    }
    printf("pulls %ld %lld late %lld mingap %lld\n", count, now_ns() - t0, late, mingap);
    fflush(stdout);
    close(fd);
    return 0;
}

/* --- the local-port path: a minimal client of the port's protocol ----- */

static int to_port = -1, from_port = -1;
static unsigned char rbuf[1 << 16];
static size_t rlen;

static size_t unhex(const char *h, unsigned char *out, size_t cap) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n && i < cap; i++) sscanf(h + 2 * i, "%2hhx", &out[i]);
    return n < cap ? n : cap;
}

static unsigned get32(const unsigned char *p) {
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, unsigned v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static int put_all(const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = write(to_port, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w; n -= (size_t)w;
    }
    return 0;
}

/* The next whole frame from the port into f (its length in *len). */
static int next_frame(unsigned char *f, size_t cap, size_t *len) {
    for (;;) {
        if (rlen >= 8) {
            size_t total = 8 + get32(rbuf + 4);
            if (total > cap) { errno = EMSGSIZE; return -1; }
            if (rlen >= total) {
                memcpy(f, rbuf, total);
                memmove(rbuf, rbuf + total, rlen - total);
                rlen -= total;
                *len = total;
                return 0;
            }
        }
        ssize_t n = read(from_port, rbuf + rlen, sizeof rbuf - rlen);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { errno = n ? errno : EPIPE; return -1; }
        rlen += (size_t)n;
    }
}

/* A REPLY's status byte (0: ok), after its chain and id. */
static int reply_status(const unsigned char *f, size_t len) {
    size_t at = 8 + 4u * f[3] + 4;
    return (f[2] == 0x82 && len > at) ? f[at] : -1;
}

static int port_toggles(char **a) {
    const char *portbin = a[0], *chip = a[1];
    int offset = atoi(a[2]), slices = atoi(a[3]), slice_ms = atoi(a[4]), burst = atoi(a[5]);
    unsigned char fork_f[64], set_f[2][256], f[4096];
    size_t fork_n = unhex(a[6], fork_f, sizeof fork_f), len;
    size_t set_n[2] = {unhex(a[7], set_f[0], sizeof set_f[0]), unhex(a[8], set_f[1], sizeof set_f[1])};
    if (burst < 1 || burst > 256) { errno = EINVAL; return die("BURST"); }

    int lfd = request_output(chip, offset, "bench-port");
    if (lfd < 0) return 1;
    if (dup2(lfd, 100) < 0) return die("dup2"); /* without close-on-exec: the port gets it */
    close(lfd);

    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0) return die("pipe");
    pid_t port = fork();
    if (port < 0) return die("fork");
    if (port == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        execl(portbin, "niche-port", (char *)NULL);
        _exit(127);
    }
    close(100);
    close(down[0]);
    close(up[1]);
    to_port = down[1];
    from_port = up[0];

    static const unsigned char hello[] = {'N', 'C', 0x02, 0, 0, 0, 0, 2, 0, 1};
    if (put_all(hello, sizeof hello) < 0 || next_frame(f, sizeof f, &len) < 0) return die("hello");
    if (f[2] != 0x81) { errno = EPROTO; return die("hello reply"); }
    if (put_all(fork_f, fork_n) < 0 || next_frame(f, sizeof f, &len) < 0) return die("fork call");
    /* REPLY of depth 0: header 8, id 4, status 1, then the int term 'i' + 8 bytes */
    if (reply_status(f, len) != 0 || len < 22 || f[13] != 'i') { errno = EPROTO; return die("fork reply"); }
    unsigned child = get32(f + 18);
    for (int v = 0; v < 2; v++) put32(set_f[v] + 8, child); /* the chain: [child] */

    unsigned id = 100;
    unsigned long long level = 0;
    for (int pass = 0; pass < 2; pass++) {
        int depth = pass ? burst : 1;
        for (int s = 0; s < slices; s++) {
            long long t0 = now_ns(), end = t0 + slice_ms * 1000000LL, t;
            long n = 0;
            do {
                for (int i = 0; i < depth; i++) {
                    level ^= 1;
                    put32(set_f[level] + 12, ++id);
                    if (put_all(set_f[level], set_n[level]) < 0) return die("write to the port");
                }
                for (int i = 0; i < depth; i++) {
                    if (next_frame(f, sizeof f, &len) < 0) return die("read from the port");
                    if (reply_status(f, len) != 0) { errno = EIO; return die("SET_VALUES through the port"); }
                }
                n += depth;
                t = now_ns();
            } while (t < end);
            printf("%s %ld %lld\n", pass ? "pslice" : "slice", n, t - t0);
        }
    }
    printf("level %llu\n", level);
    fflush(stdout);
    close(to_port); /* end of file: the port ends its tree and exits */
    int st;
    waitpid(port, &st, 0);
    return 0;
}

static int pingpong(int slices, int slice_ms) {
    int down[2], up[2];
    unsigned char b[22] = {0};
    if (pipe(down) < 0 || pipe(up) < 0) return die("pipe");
    pid_t echo = fork();
    if (echo < 0) return die("fork");
    if (echo == 0) {
        close(down[1]); /* else its read never sees end of file */
        close(up[0]);
        ssize_t n;
        while ((n = read(down[0], b, sizeof b)) > 0)
            if (write(up[1], b, (size_t)n) != n) _exit(1);
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    for (int s = 0; s < slices; s++) {
        long long t0 = now_ns(), end = t0 + slice_ms * 1000000LL, t;
        long n = 0;
        do {
            if (write(down[1], b, sizeof b) != (ssize_t)sizeof b) return die("write");
            for (size_t got = 0; got < sizeof b;) {
                ssize_t r = read(up[0], b + got, sizeof b - got);
                if (r <= 0) return die("read");
                got += (size_t)r;
            }
            n++;
            t = now_ns();
        } while (t < end);
        printf("slice %ld %lld\n", n, t - t0);
    }
    fflush(stdout);
    close(down[1]);
    waitpid(echo, NULL, 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "toggle") == 0)
        return toggle(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "pingpong") == 0)
        return pingpong(atoi(argv[2]), atoi(argv[3]));
    if (argc == 11 && strcmp(argv[1], "port") == 0)
        return port_toggles(argv + 2);
    if (argc == 5 && strcmp(argv[1], "pulls") == 0)
        return pulls(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: gpio_toggle toggle CHIP OFFSET SLICES SLICE_MS | pulls PATH COUNT PERIOD_US\n");
    return 2;
}
