/*
 * trivial_backend.c - the reference application of the gateway benchmark:
 * an HTTP/1.1 server that reads each request (its head, then its body by
 * Content-Length or chunked, counted and dropped) and answers 200 with
 * "ok N\n", N the body's length ("ok N chunked\n" for a chunked one), on
 * keep-alive connections.  Nothing else:
 * what a benchmark measures in front of it is the front's work.
 *
 *   trivial_backend [THREADS [PORT]]
 *
 * Listens on 127.0.0.1:PORT (default 0: a free port), prints the port on
 * standard output, and serves until killed.  THREADS (default 1) threads
 * each run an epoll loop over the connections they accepted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define HEAD_MAX 16384          /* a longer request head is refused */
#define LINE_MAX_ 64            /* a chunk-size line, a trailer's start */

enum state { S_HEAD, S_BODY, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_CRLF,
             S_TRAILER };

struct conn {
    int fd;
    enum state state;
    int close_after;            /* Connection: close, or HTTP/1.0 */
    int chunked;                /* this request's body is */
    int want_out;               /* EPOLLOUT asked for */
    size_t hlen;                /* head bytes so far */
    size_t llen;                /* chunk-size or trailer line so far */
    unsigned long long left;    /* body or chunk bytes still to read */
    unsigned long long body;    /* body bytes of this request */
    char *out;                  /* answers not yet written */
    size_t out_len, out_off, out_cap;
    char line[LINE_MAX_];
    char head[HEAD_MAX];
};

static int listen_fd;

static int header_is(const char *line, size_t len, const char *name,
                     const char **value)
{
    size_t n = strlen(name);

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    *value = line + n + 1;
    while (**value == ' ' || **value == '\t')
        (*value)++;
    return 1;
}

static int queue_answer(struct conn *c)
{
    const char *how = c->chunked ? " chunked" : "";
    char buf[160];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %d\r\n%s"
                     "\r\nok %llu%s\n",
                     snprintf(NULL, 0, "ok %llu%s\n", c->body, how),
                     c->close_after ? "Connection: close\r\n" : "", c->body,
                     how);

    if (c->out_len + (size_t)n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 1024;
        char *out;

        while (cap < c->out_len + (size_t)n)
            cap *= 2;
        if ((out = realloc(c->out, cap)) == NULL)
            return -1;
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf, (size_t)n);
    c->out_len += (size_t)n;
    c->state = S_HEAD;
    c->hlen = 0;
    c->body = 0;
    return 0;
}

/* The head is complete (hlen bytes, ending in an empty line): what follows. */
static int parse_head(struct conn *c)
{
    const char *p = c->head, *end = c->head + c->hlen, *eol, *v;
    int chunked = 0, http10;
    unsigned long long length = 0;

    if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
        return -1;
    http10 = eol - p >= 9 && memcmp(eol - 9, "HTTP/1.0", 8) == 0;
    c->close_after = http10;
    for (p = eol + 1; p < end; p = eol + 1) {
        size_t len;

        eol = memchr(p, '\n', (size_t)(end - p));
        len = (size_t)(eol - p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (header_is(p, len, "Content-Length", &v)) {
            char *stop;

            errno = 0;
            length = strtoull(v, &stop, 10);
            if (errno || stop == v || (*stop != '\r' && *stop != '\n'
                                       && *stop != ' '))
                return -1;
        }
        else if (header_is(p, len, "Transfer-Encoding", &v))
            chunked = memmem(v, len - (size_t)(v - p), "chunked", 7) != NULL;
        else if (header_is(p, len, "Connection", &v)) {
            if (strncasecmp(v, "close", 5) == 0)
                c->close_after = 1;
            else if (strncasecmp(v, "keep-alive", 10) == 0)
                c->close_after = 0;
        }
    }
    c->body = 0;
    c->chunked = chunked;
    if (chunked) {
        c->state = S_CHUNK_SIZE;
        c->llen = 0;
        return 0;
    }
    if (length == 0)
        return queue_answer(c);
    c->state = S_BODY;
    c->left = length;
    return 0;
}

static int end_line(struct conn *c)
{
    char *stop;
    unsigned long long size;

    while (c->llen > 0 && (c->line[c->llen - 1] == '\r'))
        c->llen--;
    c->line[c->llen] = '\0';
    if (c->state == S_TRAILER) {
        if (c->llen == 0)
            return queue_answer(c);
        c->llen = 0;
        return 0;
    }
    errno = 0;
    size = strtoull(c->line, &stop, 16);
    if (errno || stop == c->line || (*stop != '\0' && *stop != ';'))
        return -1;
    c->llen = 0;
    if (size == 0)
        c->state = S_TRAILER;
    else {
        c->state = S_CHUNK_DATA;
        c->left = size;
    }
    return 0;
}

/* Takes n bytes from the connection: -1 when the request is malformed. */
static int feed(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        size_t take;

        switch (c->state) {
        case S_HEAD: {
            size_t from = c->hlen > 3 ? c->hlen - 3 : 0;
            const char *end;

            take = n < HEAD_MAX - c->hlen ? n : HEAD_MAX - c->hlen;
            if (take == 0)
                return -1;
            memcpy(c->head + c->hlen, p, take);
            end = memmem(c->head + from, c->hlen + take - from, "\r\n\r\n", 4);
            if (end == NULL) {
                c->hlen += take;
                p += take;
                n -= take;
                break;
            }
            take = (size_t)(end + 4 - c->head) - c->hlen;
            c->hlen += take;
            p += take;
            n -= take;
            if (parse_head(c) < 0)
                return -1;
            break;
        }
        case S_BODY:
        case S_CHUNK_DATA:
            take = n < c->left ? n : (size_t)c->left;
            c->left -= take;
            c->body += take;
            p += take;
            n -= take;
            if (c->left == 0) {
                if (c->state == S_CHUNK_DATA) {
                    c->state = S_CHUNK_CRLF;
                    c->left = 2;
                }
                else if (queue_answer(c) < 0)
                    return -1;
            }
            break;
        case S_CHUNK_CRLF:
            p++;
            n--;
            if (--c->left == 0) {
                c->state = S_CHUNK_SIZE;
                c->llen = 0;
            }
            break;
        case S_CHUNK_SIZE:
        case S_TRAILER:
            n--;
            if (*p == '\n') {
                p++;
                if (end_line(c) < 0)
                    return -1;
            }
            else if (c->llen + 1 < LINE_MAX_)
                c->line[c->llen++] = *p++;
            else if (c->state == S_TRAILER)
                p++;            /* a long trailer: only its start matters */
            else
                return -1;
            break;
        }
    }
    return 0;
}

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Writes what is queued: -1 when the connection is to be dropped. */
static int flush_out(int ep, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {EPOLLIN | EPOLLOUT, {.ptr = c}};

            if (!c->want_out && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                return -1;
            c->want_out = 1;
            return 0;
        }
        if (w <= 0)
            return -1;
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after)
        return -1;
    if (c->want_out) {
        struct epoll_event ev = {EPOLLIN, {.ptr = c}};

        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            return -1;
        c->want_out = 0;
    }
    return 0;
}

static void accept_all(int ep)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;
        struct conn *c;
        struct epoll_event ev = {EPOLLIN, {NULL}};

        if (fd < 0)
            return;             /* EAGAIN: another thread took it, or none */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if ((c = calloc(1, sizeof *c)) == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void *serve(void *arg)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {EPOLLIN | EPOLLEXCLUSIVE, {NULL}}, events[64];
    static char buf[4][65536];
    char *in = buf[(long)arg & 3];

    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        perror("trivial_backend: epoll");
        exit(1);
    }
    for (;;) {
        int n = epoll_wait(ep, events, 64, -1), i;

        for (i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            int bad = 0;

            if (c == NULL) {
                accept_all(ep);
                continue;
            }
            if (events[i].events & EPOLLOUT)
                bad = flush_out(ep, c) < 0;
            while (!bad && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                   && !c->want_out) {
                ssize_t r = read(c->fd, in, 65536);

                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0 && errno == EAGAIN)
                    break;
                if (r <= 0 || feed(c, in, (size_t)r) < 0)
                    bad = 1;
                else if (c->out_len > 0)
                    bad = flush_out(ep, c) < 0;
                if ((size_t)r < 65536)
                    break;      /* level-triggered: any rest comes back */
            }
            if (bad)
                drop(ep, c);
        }
        if (n < 0 && errno != EINTR) {
            perror("trivial_backend: epoll_wait");
            exit(1);
        }
    }
    return NULL;
}

static long number(const char *s, long lo, long hi)
{
    char *stop;
    long v;

    errno = 0;
    v = strtol(s, &stop, 10);
    return errno || stop == s || *stop || v < lo || v > hi ? -1 : v;
}

int main(int argc, char **argv)
{
    long threads = argc > 1 ? number(argv[1], 1, 4) : 1;
    long port = argc > 2 ? number(argv[2], 0, 65535) : 0;
    struct sockaddr_in a = {0};
    socklen_t alen = sizeof a;
    int one = 1;
    long i;

    if (threads < 0 || port < 0 || argc > 3) {
        fputs("usage: trivial_backend [THREADS (1-4) [PORT]]\n", stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0
        || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0
        || listen(listen_fd, 1024) < 0
        || getsockname(listen_fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("trivial_backend: 127.0.0.1");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (i = 1; i < threads; i++) {
        pthread_t t;

        if (pthread_create(&t, NULL, serve, (void *)i) != 0) {
            perror("trivial_backend: pthread_create");
            return 1;
        }
    }
    serve((void *)0);
    return 0;
}
