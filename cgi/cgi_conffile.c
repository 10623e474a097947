/*
 * cgi_conffile.c - the CGI's configuration: the module's directives, one per
 * line, read from a file through the same table as the module's commands.
 *
 * Lines are split as httpd splits them: words separated by blanks, "..." or
 * '...' quote a word (a backslash before the quote keeps it), a line ending
 * in a backslash continues on the next, '#' starts a comment line.  Shared
 * hosts are shared: a config, secret file or handler program that others
 * could replace (see cgi_trust.c), or a secret file others may read, is
 * refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_file_io.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"

#define LINE_MAX_BYTES 16384
#define CONFIG_MAX_BYTES (1024 * 1024)

const char *cgi_conffile_path(apr_pool_t *p, const char *argv0)
{
    const char *env = getenv(HRFLOW_CONFIG_ENV);
    const char *self = getenv("SCRIPT_FILENAME");
    const char *slash;

    if (env && *env)
        return env;
    if (!self || !*self)
        self = argv0;
    slash = strrchr(self, '/');
    if (!slash)
        return HRFLOW_CONFIG_FILE;
    return apr_pstrcat(p, apr_pstrmemdup(p, self, slash - self + 1),
                       HRFLOW_CONFIG_FILE, NULL);
}

/* The next word of *line, httpd's way; NULL at the end of the line. */
static char *next_word(apr_pool_t *p, char **line)
{
    char *s = *line, *start, *out, *o;
    char quote = 0;

    while (apr_isspace(*s))
        s++;
    if (!*s)
        return *line = s, NULL;
    if (*s == '"' || *s == '\'')
        quote = *s++;
    start = s;
    while (*s && (quote ? *s != quote : !apr_isspace(*s))) {
        if (quote && s[0] == '\\' && s[1] == quote)
            s++;
        s++;
    }
    out = o = apr_palloc(p, s - start + 1);
    for (; start < s; start++) {
        if (quote && start[0] == '\\' && start[1] == quote)
            start++;
        *o++ = *start;
    }
    *o = '\0';
    if (quote && *s)
        s++;
    *line = s;
    return out;
}

static int others_may(const struct stat *st, mode_t bits)
{
    return (st->st_mode & bits) != 0;
}

/* Why the user running us cannot read a secret file of someone else's:
 * without suEXEC a CGI runs as the server's user, not as the customer who
 * owns the file, so a 0600 file is closed to it. */
static const char *unreadable_secret(apr_pool_t *p, const char *path,
                                     const struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd >= 0)
        return close(fd), NULL;
    if (errno != EACCES || st->st_uid == geteuid())
        return NULL;                 /* the directive reports it */
    return apr_psprintf(p,
                        "HrflowSecretFile: cannot read %s: permission "
                        "denied: " HRFLOW_CGI_NAME " runs as uid %ld and the "
                        "file belongs to uid %ld (mode %04o).  Without "
                        "suEXEC the server runs CGI programs as its own "
                        "user (www-data on Debian): let that user, and "
                        "only it, read the file (the host: chgrp www-data "
                        "and chmod 640; or you: setfacl -m u:www-data:r), "
                        "or ask for suEXEC, under which 600 works",
                        path, (long)geteuid(), (long)st->st_uid,
                        (unsigned)(st->st_mode & 07777));
}

/* Refuses a secret file that other users of the host may read. */
static const char *check_secret_file(apr_pool_t *p, const char *base,
                                     const char *file)
{
    char *path;
    struct stat st;
    const char *why;

    if (apr_filepath_merge(&path, base, file, 0, p) != APR_SUCCESS)
        return NULL;                 /* the directive reports it */
    if (stat(path, &st) != 0)
        return NULL;
    if (others_may(&st, S_IROTH | S_IWOTH | S_IWGRP))
        return apr_psprintf(p,
                            "HrflowSecretFile: %s is readable or writable by "
                            "other users (mode %04o); chmod 600 or 640 it",
                            path, (unsigned)(st.st_mode & 07777));
    if ((why = cgi_trust_path(p, path)))
        return apr_psprintf(p, "HrflowSecretFile: %s: %s", path, why);
    return unreadable_secret(p, path, &st);
}

/* Refuses the handler program just added if others could replace it. */
static const char *check_handler(apr_pool_t *p, const hf_config_t *cfg)
{
    const hf_handler_t *h = &APR_ARRAY_IDX(cfg->handlers,
                                           cfg->handlers->nelts - 1,
                                           hf_handler_t);
    const char *why = cgi_trust_path(p, h->argv[0]);

    return why ? apr_psprintf(p, "HrflowHandler: %s: %s", h->argv[0], why)
               : NULL;
}

static const char *server_only(apr_pool_t *p, const hf_directive_t *d)
{
    return apr_psprintf(p,
                        "%s: only the Apache module's durable mode uses it; "
                        HRFLOW_CGI_NAME " runs handlers while the request "
                        "waits",
                        d->name);
}

/* Gateway mode puts the module in front of another handler: the CGI is
 * itself the endpoint, with nothing behind it to hand the request to. */
static const char *module_only(apr_pool_t *p, const hf_directive_t *d)
{
    return apr_psprintf(p,
                        "%s: gateway mode is the Apache module's (in front "
                        "of another handler); " HRFLOW_CGI_NAME " is itself "
                        "the endpoint",
                        d->name);
}

/* What hrflow-worker's config holds: the rest is an endpoint's. */
static const char *const worker_directives[] = {
    "HrflowQueue", "HrflowQueuePasswordFile", "HrflowQueueName",
    "HrflowQueueTimeout", "HrflowConcurrency", "HrflowRetry",
    "HrflowRetryDelay", "HrflowHandler", NULL};

static const char *not_for_worker(apr_pool_t *p, const hf_directive_t *d)
{
    int i;

    for (i = 0; worker_directives[i]; i++)
        if (!strcmp(d->name, worker_directives[i]))
            return NULL;
    return apr_psprintf(p, "%s: hrflow-worker does not use it (it takes "
                        "HrflowQueue, HrflowQueuePasswordFile, "
                        "HrflowQueueName, HrflowQueueTimeout, "
                        "HrflowConcurrency, HrflowRetry, HrflowRetryDelay "
                        "and HrflowHandler)", d->name);
}

/* How one file is being read. */
typedef struct {
    const hf_config_ctx_t *ctx;
    int flags;                       /* CGI_CONF_* */
    const hf_logger_t *log;          /* warnings; NULL: none */
    int *inline_secret;
} conf_read_t;

/* With CGI_CONF_MISSING_HANDLERS, a handler program that is not there yet
 * (a config checked or used to sign before the handlers are uploaded) is
 * left out with a warning: 1.  0 otherwise. */
static int skip_missing_handler(apr_pool_t *p, const conf_read_t *r,
                                const hf_directive_t *d,
                                const apr_array_header_t *args)
{
    const char *program;
    char *path;
    struct stat st;

    if (!(r->flags & CGI_CONF_MISSING_HANDLERS)
        || strcmp(d->name, "HrflowHandler") != 0 || args->nelts < 3)
        return 0;
    program = APR_ARRAY_IDX(args, 1, char *);
    if (apr_filepath_merge(&path, r->ctx->base_dir, program, 0, p)
            != APR_SUCCESS
        || lstat(path, &st) == 0 || errno != ENOENT)
        return 0;
    if (r->log)
        hf_log(r->log, HF_LOG_WARNING, p,
               "HrflowHandler: %s is not there (yet): left out of this "
               "check; upload it (chmod 755) before the first event", path);
    return 1;
}

/* Applies one directive line; NULL or the reason. */
static const char *apply_line(apr_pool_t *p, const conf_read_t *r,
                              hf_config_t *cfg, char *line)
{
    const hf_config_ctx_t *ctx = r->ctx;
    apr_array_header_t *args = apr_array_make(p, 4, sizeof(char *));
    const hf_directive_t *d;
    const char *name = next_word(p, &line), *err;
    char *w;

    while ((w = next_word(p, &line)))
        APR_ARRAY_PUSH(args, char *) = w;
    APR_ARRAY_PUSH(args, char *) = NULL;
    if (*name == '<')
        return apr_psprintf(p, "%s: sections are not read here; the whole "
                            "file is one endpoint", name);
    if (!strcasecmp(name, "SetHandler") && args->nelts == 2
        && !strcasecmp(APR_ARRAY_IDX(args, 0, char *), "hrflow-webhook"))
        return NULL;                 /* true of every CGI config */
    if (!(d = hf_config_directive_find(name)))
        return apr_psprintf(p, "unknown directive '%s'", name);
    if (r->flags & CGI_CONF_WORKER) {
        if ((err = not_for_worker(p, d)))
            return err;
    }
    else if (d->scope == HF_SCOPE_SERVER)
        return server_only(p, d);
    else if (!strcmp(d->name, "HrflowVerify"))
        return module_only(p, d);
    if (!strcmp(d->name, "HrflowSecretFile") && args->nelts == 2
        && (err = check_secret_file(p, ctx->base_dir,
                                    APR_ARRAY_IDX(args, 0, char *))))
        return err;
    if (!strcmp(d->name, "HrflowSecret"))
        *r->inline_secret = 1;
    if (skip_missing_handler(p, r, d, args))
        return NULL;
    if ((err = hf_config_apply(ctx, cfg, d, args->nelts - 1,
                               (char *const *)args->elts)))
        return err;
    return strcmp(d->name, "HrflowHandler") ? NULL : check_handler(p, cfg);
}

/* Opens path, refusing a file that other users could change.  Opened
 * without following a symbolic link, and without blocking: a FIFO is
 * refused at once, not waited on. */
static const char *open_config(apr_pool_t *p, const char *path, FILE **f,
                               struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY
                            | O_CLOEXEC);
    const char *why;

    if (fd < 0 && errno == ELOOP)
        return apr_psprintf(p, "config %s: it is a symbolic link; name the "
                            "file itself", path);
    if (fd < 0)
        return apr_psprintf(p, "cannot read %s: %s", path, strerror(errno));
    if ((why = cgi_trust_open(p, path, fd, st))) {
        close(fd);
        return apr_psprintf(p, "config %s: %s", path, why);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0
        || !(*f = fdopen(fd, "r"))) {
        close(fd);
        return apr_psprintf(p, "cannot read %s: %s", path, strerror(errno));
    }
    return NULL;
}

/* A config's text, read one logical line at a time. */
typedef struct {
    const char *pos, *end;
} conf_text_t;

/* Reads one logical line (continuations joined) into buf: 1, or 0 at the
 * end, or -1 when it does not fit (never split: the rest would be read as
 * a directive of its own). */
static int read_line(conf_text_t *t, char *buf, apr_size_t size, int *line_no)
{
    apr_size_t len = 0;

    buf[0] = '\0';
    while (t->pos < t->end) {
        const char *nl = memchr(t->pos, '\n', (apr_size_t)(t->end - t->pos));
        apr_size_t n = (apr_size_t)((nl ? nl : t->end) - t->pos);

        if (n >= size - len)
            return -1;
        memcpy(buf + len, t->pos, n);
        buf[len + n] = '\0';
        t->pos += n + (nl != NULL);
        (*line_no)++;
        len += strlen(buf + len);    /* a NUL byte ends the line there */
        while (len > 0 && buf[len - 1] == '\r')
            buf[--len] = '\0';
        if (len == 0 || buf[len - 1] != '\\')
            return 1;
        buf[--len] = '\0';
    }
    return len > 0;
}

static const char *parse_text(apr_pool_t *p, const char *path,
                              const char *text, apr_size_t len,
                              const char *base_dir, hf_config_t **cfg,
                              int *inline_secret, int flags,
                              const hf_logger_t *log)
{
    char *line = apr_palloc(p, LINE_MAX_BYTES);
    hf_config_ctx_t ctx = {p, base_dir};
    conf_read_t r = {&ctx, flags, log, inline_secret};
    conf_text_t t = {text, text + len};
    const char *err = NULL;
    int line_no = 0, got;

    *cfg = hf_config_create(p);
    *inline_secret = 0;
    while (!err && (got = read_line(&t, line, LINE_MAX_BYTES, &line_no))) {
        char *s = line;
        if (got < 0) {
            err = apr_psprintf(p, "%s line %d: longer than %d bytes", path,
                               line_no + 1, LINE_MAX_BYTES - 1);
            break;
        }
        while (apr_isspace(*s))
            s++;
        if (*s && *s != '#' && (err = apply_line(p, &r, *cfg, s)))
            err = apr_psprintf(p, "%s line %d: %s", path, line_no, err);
    }
    memset(line, 0, LINE_MAX_BYTES);  /* it may have held a secret */
    if (!err && !(flags & CGI_CONF_WORKER)
        && (err = hf_config_check_endpoint(p, *cfg)))
        err = apr_psprintf(p, "%s: %s", path, err);
    return err;
}

const char *cgi_conffile_parse(apr_pool_t *p, const char *path,
                               const char *text, apr_size_t len,
                               const char *base_dir, hf_config_t **cfg,
                               int *inline_secret)
{
    return parse_text(p, path, text, len, base_dir, cfg, inline_secret, 0,
                      NULL);
}

/* Reads the whole file, which may hold a secret (cleared by the caller). */
static const char *read_all(apr_pool_t *p, const char *path, FILE *f,
                            const struct stat *st, char **text,
                            apr_size_t *len)
{
    if (st->st_size > CONFIG_MAX_BYTES)
        return apr_psprintf(p, "%s is over %d bytes", path, CONFIG_MAX_BYTES);
    *text = apr_palloc(p, (apr_size_t)st->st_size + 1);
    *len = fread(*text, 1, (apr_size_t)st->st_size + 1, f);
    if (ferror(f) || *len > (apr_size_t)st->st_size)
        return apr_psprintf(p, "cannot read %s: %s", path,
                            ferror(f) ? strerror(errno) : "it grew");
    return NULL;
}

const char *cgi_conffile_read(apr_pool_t *p, const char *path,
                              hf_config_t **cfg, const hf_logger_t *log,
                              int flags)
{
    char *text = NULL, *dir, *slash;
    const char *base_dir;
    apr_size_t len = 0;
    struct stat st;
    FILE *f;
    const char *err;
    int inline_secret = 0;

    if ((err = open_config(p, path, &f, &st)))
        return err;
    dir = apr_pstrdup(p, path);
    slash = strrchr(dir, '/');
    base_dir = slash ? (*slash = '\0', *dir ? dir : "/") : ".";
    err = read_all(p, path, f, &st, &text, &len);
    fclose(f);
    if (!err)
        err = parse_text(p, path, text, len, base_dir, cfg, &inline_secret,
                         flags, log);
    if (text)
        memset(text, 0, len);
    if (!err && inline_secret && others_may(&st, S_IROTH))
        hf_log(log, HF_LOG_WARNING, p,
               HFLOGNO(00601)
               "%s holds HrflowSecret and other users may read it: move the "
               "secret to an HrflowSecretFile that only you can read", path);
    if (!err && hf_config_signature(*cfg) == HF_SIG_OFF)
        hf_log(log, HF_LOG_WARNING, p,
               HFLOGNO(00602)
               "%s: HrflowSignature off: anyone who can reach this program "
               "can run its handlers", path);
    return err;
}
