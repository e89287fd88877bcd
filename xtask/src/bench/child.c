/* The one child that every supervisor in `cargo xtask bench` runs.
 *
 *   benchchild MODE STAMPS [go=FIFO] [stop=FILE] [bytes=N] [live=MS] [notifyfd=N]
 *
 * With no arguments (runit and s6 exec ./run, a symlink to this binary) it
 * reads the same words from ./child.args. It appends "S <ns>" (CLOCK_MONOTONIC)
 * to STAMPS first thing after exec, then by MODE:
 *   exit   appends "E <ns>" and exits 1: at once, or after live=MS
 *          milliseconds (the restart test);
 *   sleep  sleeps for ever (the healthy child);
 *   flood  waits for a byte on the go FIFO, writes `bytes` of 100-byte lines
 *          to stdout, appends "D <lines>" and sleeps;
 *   lines  waits for go, writes numbered 100-byte lines, 100 per millisecond,
 *          until the stop file exists, appends "D <lines>" and sleeps.
 * notifyfd=N writes s6's readiness newline to fd N. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *stamps;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void stamp(char tag, long long v) {
    char b[64];
    int n = snprintf(b, sizeof b, "%c %lld\n", tag, v);
    int fd = open(stamps, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, b, n) < 0) {}
        close(fd);
    }
}

static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void line(char *b, long long n) {
    /* 12 digits, a space, 86 letters, a newline: 100 bytes. */
    char d[16];
    snprintf(d, sizeof d, "%012lld", n % 1000000000000LL);
    memcpy(b, d, 12);
    b[12] = ' ';
    memset(b + 13, 'x', 86);
    b[99] = '\n';
}

static void wait_go(const char *go) {
    char c;
    int fd = open(go, O_RDONLY | O_CLOEXEC);
    if (fd < 0) _exit(3);
    if (read(fd, &c, 1) < 0) {}
    close(fd);
}

static void sleep_forever(void) {
    for (;;) pause();
}

int main(int argc, char **argv) {
    long long t0 = now_ns();
    static char argbuf[4096];
    char *words[16];
    int nw = 0;
    if (argc >= 3) {
        for (int i = 1; i < argc && nw < 16; i++) words[nw++] = argv[i];
    } else {
        int fd = open("child.args", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, argbuf, sizeof argbuf - 1) : -1;
        if (n <= 0) return 2;
        argbuf[n] = 0;
        for (char *w = strtok(argbuf, " \n"); w && nw < 16; w = strtok(NULL, " \n")) words[nw++] = w;
    }
    if (nw < 2) return 2;
    const char *mode = words[0], *go = NULL, *stop = NULL;
    long long bytes = 0;
    int notifyfd = -1;
    long live_ms = 0;
    stamps = words[1];
    for (int i = 2; i < nw; i++) {
        if (!strncmp(words[i], "go=", 3)) go = words[i] + 3;
        else if (!strncmp(words[i], "stop=", 5)) stop = words[i] + 5;
        else if (!strncmp(words[i], "bytes=", 6)) bytes = atoll(words[i] + 6);
        else if (!strncmp(words[i], "live=", 5)) live_ms = atol(words[i] + 5);
        else if (!strncmp(words[i], "notifyfd=", 9)) notifyfd = atoi(words[i] + 9);
    }
    stamp('S', t0);
    if (notifyfd >= 0) {
        if (write(notifyfd, "\n", 1) < 0) {}
        close(notifyfd);
    }
    if (!strcmp(mode, "exit")) {
        struct timespec live = {live_ms / 1000, (live_ms % 1000) * 1000000};
        if (live_ms > 0) nanosleep(&live, NULL);
        stamp('E', now_ns());
        _exit(1);
    }
    if (!strcmp(mode, "sleep")) sleep_forever();
    if (!go) return 2;
    wait_go(go);
    if (!strcmp(mode, "flood")) {
        enum { LINES = 640 };
        static char buf[LINES * 100];
        for (int i = 0; i < LINES; i++) line(buf + i * 100, i);
        long long left = bytes - bytes % 100;
        while (left > 0) {
            size_t n = left < (long long)sizeof buf ? (size_t)left : sizeof buf;
            if (write_all(buf, n)) break;
            left -= (long long)n;
        }
        stamp('D', bytes / 100);
        sleep_forever();
    }
    if (!strcmp(mode, "lines") && stop) {
        char b[100];
        long long n = 0;
        struct timespec ms = {0, 1000000};
        while (access(stop, F_OK) != 0) {
            for (int i = 0; i < 100; i++, n++) {
                line(b, n);
                if (write_all(b, 100)) break;
            }
            nanosleep(&ms, NULL);
        }
        stamp('D', n);
        sleep_forever();
    }
    return 2;
}
