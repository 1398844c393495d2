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
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

static int toggle(const char *chip, int offset, int slices, int slice_ms) {
    int cfd = open(chip, O_RDWR | O_CLOEXEC);
    if (cfd < 0) return die("open chip");
    struct gpio_v2_line_request req;
    memset(&req, 0, sizeof req);
    req.offsets[0] = (unsigned)offset;
    req.num_lines = 1;
    strcpy(req.consumer, "bench-raw");
    req.config.flags = GPIO_V2_LINE_FLAG_OUTPUT;
    if (ioctl(cfd, GPIO_V2_GET_LINE_IOCTL, &req) < 0) return die("GPIO_V2_GET_LINE_IOCTL");
    close(cfd);
    struct gpio_v2_line_values v = {.bits = 0, .mask = 1};
    unsigned long long level = 0;
    for (int s = 0; s < slices; s++) {
        long long t0 = now_ns(), end = t0 + slice_ms * 1000000LL, t;
        long n = 0;
        do {
            for (int i = 0; i < 64; i++) {
                level ^= 1;
                v.bits = level;
                if (ioctl(req.fd, GPIO_V2_LINE_SET_VALUES_IOCTL, &v) < 0) return die("SET_VALUES");
            }
            n += 64;
            t = now_ns();
        } while (t < end);
        printf("slice %ld %lld\n", n, t - t0);
    }
    printf("level %llu\n", level);
    fflush(stdout);
    close(req.fd);
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

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "toggle") == 0)
        return toggle(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 5 && strcmp(argv[1], "pulls") == 0)
        return pulls(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: gpio_toggle toggle CHIP OFFSET SLICES SLICE_MS | pulls PATH COUNT PERIOD_US\n");
    return 2;
}
