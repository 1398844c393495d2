/* A stand-in for niche-port, for checking the VM lane's plumbing alone
 * (make vm-selftest): answers each HELLO frame with HELLO (version 1,
 * "vm-stub"), ignores other frames, exits 0 on end of input. */
#include <string.h>
#include <unistd.h>

static int readn(unsigned char *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, b + got, n - got);
        if (r <= 0)
            return -1;
        got += r;
    }
    return 0;
}

int main(void)
{
    unsigned char h[8], body[65536];
    static const char ver[] = "vm-stub";
    for (;;) {
        if (readn(h, 2) < 0)
            return 0;
        if (h[0] != 'N' || h[1] != 'C')
            continue;
        if (readn(h + 2, 6) < 0)
            return 0;
        unsigned len = (unsigned)h[4] << 24 | h[5] << 16 | h[6] << 8 | h[7];
        if (len > sizeof body)
            continue;
        if (readn(body, len) < 0)
            return 0;
        if (h[2] == 0x02) {
            unsigned char out[8 + 2 + sizeof ver - 1] = {'N', 'C', 0x81, 0, 0, 0, 0,
                                                         2 + sizeof ver - 1, 0, 1};
            memcpy(out + 10, ver, sizeof ver - 1);
            if (write(1, out, sizeof out) != (ssize_t)sizeof out)
                return 1;
        }
    }
}
