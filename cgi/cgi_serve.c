/*
 * cgi_serve.c - one CGI/1.1 request (RFC 3875): the request from the
 * environment and standard input, the answer on standard output.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"

/* httpd writes a CGI's standard error to its error log as it comes: each
 * line is bounded here (httpd bounds its own at 8192 bytes too), and control
 * characters are escaped so that no one can forge a line. */
#define LOG_LINE_MAX 8192
#define LOG_CUT_ROOM 48       /* " [N more bytes not logged]\n" */

static void write_stderr(void *ctx, int level, const char *msg)
{
    static const char *const names[] = {"emerg", "alert", "crit", "error",
                                        "warn", "notice", "info", "debug"};
    char line[LOG_LINE_MAX];
    const char *s = msg;
    int len;

    (void)ctx;
    len = snprintf(line, sizeof line, HRFLOW_CGI_NAME ": [%s] ",
                   names[level >= 0 && level <= 7 ? level : 3]);
    for (; *s && len < LOG_LINE_MAX - LOG_CUT_ROOM - HF_ESCAPED_MAX; s++)
        len += hf_log_escape_byte((unsigned char)*s, 0, line + len);
    if (*s)
        len += snprintf(line + len, LOG_CUT_ROOM,
                        " [%" APR_SIZE_T_FMT " more bytes not logged]",
                        strlen(s));
    line[len++] = '\n';
    fwrite(line, 1, (size_t)len, stderr);
}

const hf_logger_t cgi_serve_stderr_log = {write_stderr, NULL, NULL};

/* A request header is HTTP_ and its name upper-cased, '-' as '_'. */
static const char *request_header(void *ctx, const char *name)
{
    apr_pool_t *p = ctx;
    char *var = apr_pstrcat(p, "HTTP_", name, NULL), *c;

    for (c = var + 5; *c; c++)
        *c = *c == '-' ? '_' : apr_toupper(*c);
    return getenv(var);
}

/* Reads and drops the rest of standard input, at most DISCARD_MAX bytes
 * (limit, when CONTENT_LENGTH tells how many are left).  httpd's CGI modules
 * write the whole body before they read the answer: a body left unread
 * makes the server reset the connection instead of sending the answer. */
#define DISCARD_MAX ((apr_off_t)16 * 1048576)

static void drain_stdin(apr_off_t limit)
{
    char buf[16384];
    apr_off_t left = limit >= 0 && limit < DISCARD_MAX ? limit : DISCARD_MAX;
    ssize_t n;

    while (left > 0) {
        n = read(STDIN_FILENO, buf,
                 left < (apr_off_t)sizeof buf ? (size_t)left : sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
        if (n > 0)
            left -= n;
    }
}

/* CONTENT_LENGTH: 0 and the value, 0 and -1 when absent (a chunked body:
 * read to the end), or -1 when it is not a number. */
static int content_length(apr_off_t *want)
{
    const char *cl = getenv("CONTENT_LENGTH");
    char *end;

    *want = -1;
    if (!cl || !*cl)
        return 0;
    if (apr_strtoff(want, cl, &end, 10) != APR_SUCCESS || *end || *want < 0)
        return -1;
    return 0;
}

/* Drops a body that will not be read (see drain_stdin). */
static void discard_body(void)
{
    apr_off_t want;

    if (content_length(&want) == 0)
        drain_stdin(want);
}

/* Reads the body: CONTENT_LENGTH bytes, or to the end when the server sent
 * none (a chunked request).  Stops past max. 0, or -1 on a short read. */
static int read_body(apr_pool_t *p, apr_off_t max, hf_request_t *req)
{
    apr_off_t want;
    apr_size_t cap, len = 0;
    char *buf;
    ssize_t n;

    if (content_length(&want) != 0)
        return -1;
    if (want > max) {
        drain_stdin(want);
        return req->body_too_large = 1, 0;
    }
    cap = (apr_size_t)(want >= 0 ? want : max) + 2;
    buf = apr_palloc(p, cap);
    while ((want < 0 || (apr_off_t)len < want) && len < cap - 1) {
        n = read(STDIN_FILENO, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (apr_size_t)n;
    }
    if (want >= 0 && (apr_off_t)len < want)
        return -1;
    if ((apr_off_t)len > max) {
        drain_stdin(want < 0 ? -1 : want - (apr_off_t)len);
        req->body_too_large = 1;
    }
    buf[len] = '\0';
    req->body = buf;
    req->body_len = len;
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 503: return "Service Unavailable";
    }
    return "Internal Server Error";
}

static void respond(apr_pool_t *p, const hf_outcome_t *out)
{
    int status = hf_receive_outcome_http_status(out);

    printf("Status: %d %s\r\n", status, reason(status));
    if (out->rc == HF_E_METHOD)
        fputs("Allow: POST\r\n", stdout);
    printf("Content-Type: application/json\r\n\r\n%s",
           hf_receive_response_body(p, out));
    fflush(stdout);
}

static void refuse(apr_pool_t *p, hf_rc_t rc, const char *error)
{
    hf_outcome_t out;

    memset(&out, 0, sizeof out);
    out.rc = rc;
    out.error = error;
    respond(p, &out);
}

int cgi_serve(apr_pool_t *p, const char *argv0)
{
    const char *path = cgi_conffile_path(p, argv0), *err;
    hf_config_t *cfg;
    hf_request_t req = {0};
    hf_outcome_t out;

    if ((err = cgi_conffile_read(p, path, &cfg, &cgi_serve_stderr_log, 0))) {
        discard_body();
        hf_log(&cgi_serve_stderr_log, HF_LOG_ERR, p, HFLOGNO(00611) "%s", err);
        refuse(p, HF_E_CONFIG, "server_misconfigured");
        return 0;
    }
    req.method = getenv("REQUEST_METHOD");
    req.content_type = getenv("CONTENT_TYPE");
    req.header = request_header;
    req.header_ctx = p;
    req.body = "";
    if (!req.method || strcmp(req.method, "POST") != 0)
        discard_body();           /* answered 405, but read first */
    else if (read_body(p, hf_config_max_body(cfg), &req) != 0) {
        hf_log(&cgi_serve_stderr_log, HF_LOG_INFO, p,
               HFLOGNO(00612) "refused with 400: the body is shorter than "
                              "CONTENT_LENGTH");
        refuse(p, HF_E_MALFORMED, "incomplete_body");
        return 0;
    }
    hf_receive(p, cfg, &req, &out);
    if (out.rc == HF_OK)
        hf_deliver(p, cfg, &out, &cgi_serve_stderr_log);
    hf_receive_log_refusal(p, cfg, &out, &cgi_serve_stderr_log);
    respond(p, &out);
    return 0;
}
