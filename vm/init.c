/* PID 1 of the VM lane's guests (static, built with zig for each arch).
 *
 * mounts proc, sys, devtmpfs; loads the modules listed in /etc/modules (one
 * "path [params]" a line, dependencies first) with finit_module(); mounts
 * configfs and creates a gpio-sim chip (bank "niche-sim", 16 lines, lines 0
 * and 1 named); prints each gpiochip it sees and a READY line on the console;
 * then runs /niche-port with stdin/stdout on a raw serial line (kernel
 * command line niche_tty=hvc0|ttyS0|...), its stderr on the console. When the
 * port exits, prints its status and powers off.
 *
 * Console lines the host watches for (tests/vm/guest.py):
 *   NICHE-GPIOCHIP name=gpiochipN label=L lines=N
 *   NICHE-READY arch=A tty=/dev/T
 *   NICHE-FAIL <why>
 *   NICHE-PORT-EXIT status=S
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SIM "/sys/kernel/config/gpio-sim/niche"

static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    (void)!write(1, buf, n);
}

static void poweroff(void)
{
    sync();
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

static void fail(const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("NICHE-FAIL %s (errno %d: %s)", buf, errno, strerror(errno));
    poweroff();
}

static int put(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, val, strlen(val));
    close(fd);
    return n == (ssize_t)strlen(val) ? 0 : -1;
}

static int get(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return 0;
}

static void cmdline(const char *key, char *out, size_t len, const char *dflt)
{
    char buf[2048], *p;
    snprintf(out, len, "%s", dflt);
    if (get("/proc/cmdline", buf, sizeof buf) < 0)
        return;
    size_t kl = strlen(key);
    for (p = strtok(buf, " "); p; p = strtok(NULL, " "))
        if (!strncmp(p, key, kl) && p[kl] == '=')
            snprintf(out, len, "%s", p + kl + 1);
}

static void load_modules(void)
{
    FILE *f = fopen("/etc/modules", "r");
    char line[512];
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        char *params = strchr(line, ' ');
        if (params)
            *params++ = 0;
        int fd = open(line, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            fail("open %s", line);
        if (syscall(SYS_finit_module, fd, params ? params : "", 0) < 0 && errno != EEXIST)
            fail("finit_module %s", line);
        close(fd);
    }
    fclose(f);
}

static void make_sim(void)
{
    struct stat st;
    if (stat("/sys/kernel/config/gpio-sim", &st) < 0)
        return; /* no gpio-sim on this guest (raspi0) */
    if (mkdir(SIM, 0755) < 0 || mkdir(SIM "/bank0", 0755) < 0)
        fail("mkdir gpio-sim");
    if (put(SIM "/bank0/label", "niche-sim") < 0 || put(SIM "/bank0/num_lines", "16") < 0)
        fail("configure gpio-sim bank");
    static const char *names[] = {"niche-out0", "niche-in1"};
    for (int i = 0; i < 2; i++) {
        char p[128];
        snprintf(p, sizeof p, SIM "/bank0/line%d", i);
        if (mkdir(p, 0755) < 0)
            fail("mkdir %s", p);
        snprintf(p, sizeof p, SIM "/bank0/line%d/name", i);
        if (put(p, names[i]) < 0)
            fail("write %s", p);
    }
    if (put(SIM "/live", "1") < 0)
        fail("gpio-sim live");
    char dev[64];
    if (get(SIM "/dev_name", dev, sizeof dev) == 0) {
        char chip[64] = "";
        get(SIM "/bank0/chip_name", chip, sizeof chip);
        say("NICHE-SIM dev=%s chip=%s", dev, chip);
    }
}

static void list_chips(void)
{
    DIR *d = opendir("/sys/bus/gpio/devices");
    struct dirent *e;
    int n = 0;
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "gpiochip", 8))
            continue;
        char p[300];
        snprintf(p, sizeof p, "/dev/%s", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        struct gpiochip_info info;
        if (fd < 0 || ioctl(fd, GPIO_GET_CHIPINFO_IOCTL, &info) < 0) {
            say("NICHE-GPIOCHIP name=%s error=%s", e->d_name, strerror(errno));
        } else {
            say("NICHE-GPIOCHIP name=%s label=%s lines=%u", info.name, info.label, info.lines);
            n++;
        }
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
    say("NICHE-GPIOCHIPS %d", n);
}

static int open_tty(const char *name, char *path, size_t len)
{
    snprintf(path, len, "/dev/%s", name);
    int fd = -1;
    for (int i = 0; i < 100 && fd < 0; i++) { /* the device may come up late */
        fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (fd < 0)
        fail("open %s", path);
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        fail("tcgetattr %s", path);
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~CRTSCTS;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetspeed(&t, B115200);
    if (tcsetattr(fd, TCSANOW, &t) < 0)
        fail("tcsetattr %s", path);
    tcflush(fd, TCIOFLUSH);
    return fd;
}

int main(void)
{
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) < 0 && errno != EBUSY)
        fail("mount devtmpfs");
    mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
    mount("tmpfs", "/run", "tmpfs", 0, "mode=755");
    /* stdout/stderr are the console the kernel opened for us */

    char arch[32], tty[32], path[64];
    cmdline("niche_arch", arch, sizeof arch, "?");
    cmdline("niche_tty", tty, sizeof tty, "hvc0");

    load_modules();
    struct stat st;
    if (stat("/sys/kernel/config", &st) == 0)
        mount("configfs", "/sys/kernel/config", "configfs", 0, NULL);
    make_sim();
    list_chips();

    int fd = open_tty(tty, path, sizeof path);
    char up[64] = "";
    get("/proc/uptime", up, sizeof up);
    say("NICHE-READY arch=%s tty=%s uptime=%s", arch, path, up);

    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        setsid();
        dup2(fd, 0);
        dup2(fd, 1);
        char *argv[] = {"/niche-port", NULL};
        char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=dumb", NULL};
        execve(argv[0], argv, envp);
        say("NICHE-FAIL execve /niche-port (errno %d: %s)", errno, strerror(errno));
        _exit(127);
    }
    close(fd);
    for (;;) { /* PID 1 reaps every orphan; stop when the port is gone */
        int status;
        pid_t w = waitpid(-1, &status, 0);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            fail("waitpid");
        if (w == pid) {
            if (WIFEXITED(status))
                say("NICHE-PORT-EXIT status=%d", WEXITSTATUS(status));
            else
                say("NICHE-PORT-EXIT signal=%d", WTERMSIG(status));
            break;
        }
    }
    poweroff();
    return 0;
}
