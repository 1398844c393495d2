/* bench/pingpong.c: the baseline of `make bench` (issue 3).
 *
 * The cheapest possible "port": read one frame from stdin (the 8-byte
 * header of docs/protocol.md, whose bytes 4..7 are the big-endian length
 * of what follows), write a frame of the same size back to stdout, and
 * loop until end of file. bench/run.py drives it from Python with the
 * same synchronous write-then-read loop that a getpid call costs, so the
 * ratio getpid/ping-pong shows what the port and niche.Port add on top of
 * two pipe round trips.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAXBODY (256 * 1024 + 1024)

static unsigned char buf[8 + MAXBODY];

static int readn(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(0, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int writen(const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(1, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int main(void)
{
    for (;;) {
        if (readn(buf, 8) < 0)
            return 0;
        uint32_t len = ((uint32_t)buf[4] << 24) | ((uint32_t)buf[5] << 16) |
                       ((uint32_t)buf[6] << 8) | (uint32_t)buf[7];
        if (len > MAXBODY)
            return 2;
        if (readn(buf + 8, len) < 0)
            return 1;
        /* Same size back, as a reply would be: swap in an "up" type. */
        buf[2] = (unsigned char)(buf[2] | 0x80);
        if (writen(buf, 8 + (size_t)len) < 0)
            return 1;
    }
}
