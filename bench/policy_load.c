/*
 * policy_load.c - a load generator for Postfix policy services (the
 * greylisting benchmark, bench/bench_greylist.sh).
 *
 * N threads, each with one persistent connection, send policy requests one
 * at a time (as Postfix's smtpd does) and time each answer. The request
 * stream is deterministic, so two services get exactly the same requests:
 *   new     every request a new triplet (sender and recipient unique;
 *           OFFSET shifts the numbering, so later runs against the same
 *           service are new too)
 *   repeat  100 triplets asked again and again
 * Client addresses cycle through 1,000 addresses of 127.40.0.0/16.
 *
 * Waiting for an answer: when the client has fewer threads than there are
 * CPUs, each thread has a CPU of its own and busy-waits for the answer
 * (non-blocking recv for up to 1 ms, then a blocking read), so a request's
 * time is the service's and not the client's own sleep and wake-up (on a VM
 * that wake-up costs ~35 us, more than a whole sluice decision). With as
 * many threads as CPUs or more, spinning would take the service's CPU, so
 * threads block in read(). The same rule applies to every service measured;
 * the output says which was used (wait=spin|block).
 *
 * usage: policy_load HOST PORT CONNS REQUESTS new|repeat [MAX_SECONDS] [TAG] [OFFSET]
 * prints: TAG conns=N mode=M requests=R seconds=S rate=D/s p50_us=A p99_us=B
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct load {
    const char *host;
    int port;
    long requests;
    int repeat;
    long offset;
    double max_seconds;
    atomic_long next;
    double start;
};

struct worker {
    struct load *ld;
    long *lat_us;
    long n;
    long cap;
    int failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, host, &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int build(char *out, size_t len, long i, int repeat, long offset)
{
    long k = repeat ? i % 100 : offset + i;
    return snprintf(out, len,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=127.40.%ld.%ld\nclient_name=unknown\nreverse_client_name=unknown\n"
        "helo_name=mail.bench.test\nsender=user%ld@bench.test\nrecipient=rcpt%ld@test.example\n"
        "recipient_count=0\nqueue_id=\ninstance=%lx.1\nsize=0\n\n",
        (i % 1000) / 250, (i % 250) + 1, k, k, i);
}

static bool spin_wait;   /* see the header comment */

/* One read of the answer; busy-waits first when spin_wait is set. */
static ssize_t read_some(int fd, char *p, size_t cap)
{
    if (spin_wait) {
        double until = now_s() + 0.001;
        do {
            ssize_t n = recv(fd, p, cap, MSG_DONTWAIT);
            if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                return n;
        } while (now_s() < until);
    }
    return read(fd, p, cap);
}

/* Read one answer (up to the empty line). */
static int read_answer(int fd)
{
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read_some(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        if (have >= 2 && strstr(buf, "\n\n"))
            return strncmp(buf, "action=", 7) == 0 ? 0 : -1;
        if (have >= sizeof(buf) - 1)
            return -1;
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct load *ld = w->ld;
    int fd = connect_to(ld->host, ld->port);
    if (fd < 0) {
        w->failed = 1;
        return NULL;
    }
    char req[1024];
    for (;;) {
        long i = atomic_fetch_add(&ld->next, 1);
        if (i >= ld->requests || now_s() - ld->start > ld->max_seconds)
            break;
        int n = build(req, sizeof(req), i, ld->repeat, ld->offset);
        double t0 = now_s();
        if (write(fd, req, (size_t)n) != n || read_answer(fd) < 0) {
            w->failed = 1;
            break;
        }
        if (w->n < w->cap)
            w->lat_us[w->n++] = (long)((now_s() - t0) * 1e6);
    }
    close(fd);
    return NULL;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: policy_load HOST PORT CONNS REQUESTS new|repeat [MAX_SECONDS] "
                "[TAG] [OFFSET]\n");
        return 2;
    }
    struct load ld = {.host = argv[1], .port = (int)strtol(argv[2], NULL, 10),
                      .requests = strtol(argv[4], NULL, 10),
                      .repeat = strcmp(argv[5], "repeat") == 0,
                      .max_seconds = argc > 6 ? strtod(argv[6], NULL) : 60,
                      .offset = argc > 8 ? strtol(argv[8], NULL, 10) : 0};
    int conns = (int)strtol(argv[3], NULL, 10);
    spin_wait = conns < sysconf(_SC_NPROCESSORS_ONLN);
    const char *tag = argc > 7 ? argv[7] : "load";
    pthread_t *th = calloc((size_t)conns, sizeof(*th));
    struct worker *w = calloc((size_t)conns, sizeof(*w));
    atomic_init(&ld.next, 0);
    ld.start = now_s();
    for (int i = 0; i < conns; i++) {
        w[i].ld = &ld;
        w[i].cap = ld.requests;
        w[i].lat_us = malloc(sizeof(long) * (size_t)ld.requests);
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    long total = 0;
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
        failed |= w[i].failed;
    }
    double secs = now_s() - ld.start;
    long *all = malloc(sizeof(long) * (size_t)(total ? total : 1)), k = 0;
    for (int i = 0; i < conns; i++)
        for (long j = 0; j < w[i].n; j++)
            all[k++] = w[i].lat_us[j];
    qsort(all, (size_t)total, sizeof(long), cmp_long);
    long p50 = total ? all[total / 2] : 0, p99 = total ? all[(total * 99) / 100] : 0;
    printf("%s conns=%d mode=%s requests=%ld seconds=%.2f rate=%.0f/s p50_us=%ld p99_us=%ld wait=%s%s\n",
           tag, conns, argv[5], total, secs, total / secs, p50, p99, spin_wait ? "spin" : "block",
           failed ? " (errors)" : "");
    return failed ? 1 : 0;
}
