/*
 * hf_config.c - the directives of SPEC section 3, for both front ends.
 *
 * One table defines every directive: the module builds its command table
 * from it and the CGI reads its config file through it.  Members start
 * unset and are merged "add if set, else base", so per-directory inheritance
 * works as in httpd's own modules; defaults are applied when read.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_file_info.h>
#include <apr_lib.h>
#include "hrflow.h"

/* Scalars merged "add if set, else base": listed once so none is forgotten. */
#define HF_SCALARS(X) \
    X(signature) X(timeout) X(max_body) X(max_events) X(concurrency) X(retry) \
    X(retry_delay) X(queue_timeout) X(worker) X(verify)
#define HF_STRINGS(X) X(signature_header) X(spool) X(queue) \
    X(queue_password_file) X(queue_name)

hf_config_t *hf_config_create(apr_pool_t *p)
{
    hf_config_t *cfg = apr_pcalloc(p, sizeof *cfg);
#define UNSET_SCALAR(m) cfg->m = HF_UNSET;
    HF_SCALARS(UNSET_SCALAR)
#undef UNSET_SCALAR
    return cfg;
}

hf_config_t *hf_config_merge(apr_pool_t *p, const hf_config_t *base,
                             const hf_config_t *add)
{
    hf_config_t *cfg = apr_pcalloc(p, sizeof *cfg);

#define MERGE(m) cfg->m = add->m != HF_UNSET ? add->m : base->m;
    HF_SCALARS(MERGE)
#undef MERGE
#define MERGE(m) cfg->m = add->m ? add->m : base->m;
    HF_STRINGS(MERGE)
    /* A section with secrets of its own does not also accept its parent's. */
    MERGE(secrets)
#undef MERGE
    /* Handlers accumulate, the inner section's listed first. */
    if (add->handlers && base->handlers)
        cfg->handlers = apr_array_append(p, add->handlers, base->handlers);
    else
        cfg->handlers = add->handlers ? add->handlers : base->handlers;
    return cfg;
}

/* The settings of durable mode, which belong to the server. */
#define HF_SERVER_SCALARS(X) X(concurrency) X(retry) X(retry_delay) \
    X(queue_timeout) X(worker)
#define HF_SERVER_STRINGS(X) X(spool) X(queue) X(queue_password_file) \
    X(queue_name)

hf_config_t *hf_config_with_server(apr_pool_t *p, const hf_config_t *dir,
                                   const hf_config_t *server)
{
    hf_config_t *cfg = apr_pmemdup(p, dir, sizeof *cfg);

#define COPY(m) cfg->m = server->m;
    HF_SERVER_SCALARS(COPY)
    HF_SERVER_STRINGS(COPY)
#undef COPY
    return cfg;
}

const char *hf_config_server_conflict(apr_pool_t *p, const hf_config_t *a,
                                      const hf_config_t *b)
{
#define DIFFERS(m, name) \
    if (hf_config_##m(a) != hf_config_##m(b)) \
        return apr_psprintf(p, name " %d and %d", hf_config_##m(a), \
                            hf_config_##m(b));
    DIFFERS(concurrency, "HrflowConcurrency")
    DIFFERS(retry, "HrflowRetry")
    DIFFERS(retry_delay, "HrflowRetryDelay")
#undef DIFFERS
    /* Store-and-forward: the spool's one dispatcher forwards to one queue.
     * URLs are not shown: they may hold a password. */
    if ((a->queue == NULL) != (b->queue == NULL)
        || (a->queue && strcmp(a->queue, b->queue) != 0))
        return a->queue && b->queue ? "HrflowQueue (two URLs)"
                                    : "HrflowQueue (set in one only)";
    if (a->queue && strcmp(hf_config_queue_name(a), hf_config_queue_name(b)))
        return apr_psprintf(p, "HrflowQueueName %s and %s",
                            hf_config_queue_name(a), hf_config_queue_name(b));
    return NULL;
}

int hf_config_signature(const hf_config_t *c)
{
    return c->signature == HF_UNSET ? HF_SIG_REQUIRED : c->signature;
}
int hf_config_timeout_ms(const hf_config_t *c)
{
    return c->timeout == HF_UNSET ? HF_DEFAULT_TIMEOUT * 1000 : c->timeout;
}
int hf_config_timeout(const hf_config_t *c)
{
    return (hf_config_timeout_ms(c) + 999) / 1000;
}
apr_off_t hf_config_max_body(const hf_config_t *c)
{
    return c->max_body == HF_UNSET ? HF_DEFAULT_MAX_BODY : c->max_body;
}
int hf_config_max_events(const hf_config_t *c)
{
    return c->max_events == HF_UNSET ? HF_DEFAULT_MAX_EVENTS : c->max_events;
}
int hf_config_concurrency(const hf_config_t *c)
{
    return c->concurrency == HF_UNSET ? HF_DEFAULT_CONCURRENCY
                                      : c->concurrency;
}
int hf_config_retry(const hf_config_t *c)
{
    return c->retry == HF_UNSET ? HF_DEFAULT_RETRY : c->retry;
}
int hf_config_retry_delay(const hf_config_t *c)
{
    return c->retry_delay == HF_UNSET ? HF_DEFAULT_RETRY_DELAY
                                      : c->retry_delay;
}
int hf_config_queue_timeout_ms(const hf_config_t *c)
{
    return c->queue_timeout == HF_UNSET ? HF_DEFAULT_QUEUE_TIMEOUT_MS
                                        : c->queue_timeout;
}
const char *hf_config_queue_name(const hf_config_t *c)
{
    return c->queue_name ? c->queue_name : HF_DEFAULT_QUEUE_NAME;
}
int hf_config_worker(const hf_config_t *c)
{
    return c->worker == HF_UNSET ? 1 : c->worker;
}
int hf_config_verify(const hf_config_t *c)
{
    return c->verify == 1;
}

/* ---- value parsers ---------------------------------------------------- */

/* The units of httpd's ap_timeout_parameter_parse, seconds by default. */
static const struct {
    const char *suffix;
    apr_interval_time_t unit;
} time_units[] = {{"", APR_USEC_PER_SEC},     {"s", APR_USEC_PER_SEC},
                  {"ms", 1000},               {"mi", 60 * APR_USEC_PER_SEC},
                  {"min", 60 * APR_USEC_PER_SEC},
                  {"h", 3600 * APR_USEC_PER_SEC}};

const char *hf_config_parse_time(const char *s, apr_interval_time_t *out)
{
    char *end;
    apr_int64_t v;
    apr_size_t i;

    if (!apr_isdigit(*s))
        return "not a number";
    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    if (errno || v > 1000000000)   /* no overflow in any unit */
        return "too large";
    for (i = 0; i < sizeof time_units / sizeof *time_units; i++)
        if (!strcasecmp(end, time_units[i].suffix)) {
            *out = (apr_interval_time_t)v * time_units[i].unit;
            return NULL;
        }
    return "not one of the units ms, s, min, h";
}

static const char *parse_number(apr_pool_t *p, const char *s, apr_int64_t min,
                                apr_int64_t max, apr_int64_t *out)
{
    char *end;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max || *s == '+' || *s == '-')
        return apr_psprintf(p, "'%s' is not a whole number from %"
                            APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                            s, min, max);
    *out = v;
    return NULL;
}

static const char *set_int(apr_pool_t *p, const char *s, apr_int64_t min,
                           apr_int64_t max, int *member)
{
    apr_int64_t v;
    const char *err = parse_number(p, s, min, max, &v);

    if (!err)
        *member = (int)v;
    return err;
}

/* A path as the configuration keeps it: in the configuration's pool, since
 * the caller's words may live in a pool that dies after the config pass
 * (httpd's cmd->temp_pool), and relative ones merged onto base_dir as
 * ap_server_root_relative does ("./spool" and "spool" are one folder).
 * The module hands in paths it already resolved that way. */
static const char *resolve(const hf_config_ctx_t *ctx, const char *path)
{
    char *out;
    apr_size_t len;

    if (!ctx->base_dir)
        out = apr_pstrdup(ctx->pool, path);
    else if (apr_filepath_merge(&out, ctx->base_dir, path,
                                APR_FILEPATH_TRUENAME, ctx->pool)
             != APR_SUCCESS)
        return NULL;
    /* "spool/" is "spool" too. */
    for (len = strlen(out); len > 1 && out[len - 1] == '/'; len--)
        out[len - 1] = '\0';
    return out;
}

static const char *bad_path(apr_pool_t *p, const char *path)
{
    return apr_psprintf(p, "'%s' is not a valid path", path);
}

/* ---- directive setters ------------------------------------------------ */

static void add_secret(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                       const char *secret)
{
    if (!cfg->secrets)
        cfg->secrets = apr_array_make(ctx->pool, 2, sizeof(const char *));
    APR_ARRAY_PUSH(cfg->secrets, const char *) = secret;
}

static const char *set_secret(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                              int argc, char *const *argv)
{
    if (!*argv[0])
        return "an empty secret is not a secret";
    add_secret(ctx, cfg, apr_pstrdup(ctx->pool, argv[0]));
    return NULL;
}

/* A secret file is read whole, at startup; each line is one secret, however
 * long, up to SECRET_LINE_MAX bytes: a longer line is refused, never split
 * into several secrets.  Memory that held secrets is wiped. */
#define SECRET_LINE_MAX 65536
#define SECRET_FILE_MAX (16 * SECRET_LINE_MAX)

const char *hf_config_read_secret_file(apr_pool_t *p, const char *path,
                                       char **text, apr_size_t *len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    ssize_t n = 0;

    if (fd < 0)
        return apr_psprintf(p, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return apr_psprintf(p, "cannot read %s: not a regular file", path);
    }
    if (st.st_size > SECRET_FILE_MAX) {
        close(fd);
        return apr_psprintf(p, "cannot read %s: larger than %d bytes", path,
                            SECRET_FILE_MAX);
    }
    *text = calloc(1, (size_t)st.st_size + 2);
    for (*len = 0; *text && *len <= (apr_size_t)st.st_size; *len += (size_t)n)
        if ((n = read(fd, *text + *len, (size_t)st.st_size + 1 - *len)) <= 0)
            break;
    close(fd);
    if (!*text || n < 0 || *len > (apr_size_t)st.st_size) {
        if (*text)
            free(memset(*text, 0, (size_t)st.st_size + 2));
        return apr_psprintf(p, "cannot read %s: %s", path,
                            n < 0 ? strerror(errno) : "it changed while read");
    }
    return NULL;
}

/* Adds the secret of one line (blanks around it dropped); NULL or why not. */
static const char *add_secret_line(const hf_config_ctx_t *ctx,
                                   hf_config_t *cfg, char *s, apr_size_t len,
                                   int *found)
{
    char *e = s + len;

    if (len > SECRET_LINE_MAX)
        return "longer than " APR_STRINGIFY(SECRET_LINE_MAX) " bytes";
    if (memchr(s, '\0', len))
        return "a NUL byte in it";
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && strchr(" \t\r", e[-1]))
        e--;
    if (s == e || *s == '#')
        return NULL;
    add_secret(ctx, cfg, apr_pstrmemdup(ctx->pool, s, (apr_size_t)(e - s)));
    (*found)++;
    return NULL;
}

static const char *set_secret_file(const hf_config_ctx_t *ctx,
                                   hf_config_t *cfg, int argc,
                                   char *const *argv)
{
    const char *path = resolve(ctx, argv[0]), *why = NULL;
    char *text = NULL, *line, *nl;
    apr_size_t len = 0;
    int found = 0, line_no = 0;

    if (!path)
        return bad_path(ctx->pool, argv[0]);
    if ((why = hf_config_read_secret_file(ctx->pool, path, &text, &len)))
        return why;
    for (line = text; !why && line < text + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl)
            nl = text + len;
        line_no++;
        why = add_secret_line(ctx, cfg, line, (apr_size_t)(nl - line), &found);
    }
    free(memset(text, 0, len + 2));
    if (why)
        return apr_psprintf(ctx->pool, "line %d of %s: %s", line_no, path,
                            why);
    return found ? NULL
                 : apr_psprintf(ctx->pool, "no secret in %s", path);
}

static const char *set_signature(const hf_config_ctx_t *ctx,
                                 hf_config_t *cfg, int argc, char *const *argv)
{
    if (!strcasecmp(argv[0], "required"))
        cfg->signature = HF_SIG_REQUIRED;
    else if (!strcasecmp(argv[0], "optional"))
        cfg->signature = HF_SIG_OPTIONAL;
    else if (!strcasecmp(argv[0], "off"))
        cfg->signature = HF_SIG_OFF;
    else
        return apr_psprintf(ctx->pool,
                            "'%s' is not one of required, optional, off",
                            argv[0]);
    return NULL;
}

static const char *set_signature_header(const hf_config_ctx_t *ctx,
                                        hf_config_t *cfg, int argc,
                                        char *const *argv)
{
    const char *c;

    if (!*argv[0])
        return "an empty name is not a header name";
    for (c = argv[0]; *c; c++)
        if (!(apr_isalnum(*c) || *c == '-' || *c == '_'))
            return apr_psprintf(ctx->pool, "'%s' is not a header name",
                                argv[0]);
    cfg->signature_header = apr_pstrdup(ctx->pool, argv[0]);
    return NULL;
}

static const char *set_handler(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                               int argc, char *const *argv)
{
    const char *why = hf_route_pattern_check(argv[0]);
    const char *program = resolve(ctx, argv[1]);
    const char **args;
    hf_handler_t *h;
    struct stat st;
    int i;

    if (why)
        return apr_psprintf(ctx->pool, "bad pattern '%s': %s", argv[0], why);
    if (!program)
        return bad_path(ctx->pool, argv[1]);
    if (stat(program, &st) != 0)
        return apr_psprintf(ctx->pool, "cannot run %s: %s", program,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return apr_psprintf(ctx->pool, "cannot run %s: not a regular file",
                            program);
    if (access(program, X_OK) != 0 || !(st.st_mode & 0111))
        return apr_psprintf(ctx->pool, "cannot run %s: not executable",
                            program);
    if ((why = hf_run_check_crlf(ctx->pool, program)))
        return why;
    args = apr_pcalloc(ctx->pool, (apr_size_t)argc * sizeof *args);
    args[0] = program;
    for (i = 2; i < argc; i++)
        args[i - 1] = apr_pstrdup(ctx->pool, argv[i]);
    if (!cfg->handlers)
        cfg->handlers = apr_array_make(ctx->pool, 4, sizeof(hf_handler_t));
    h = apr_array_push(cfg->handlers);
    h->pattern = apr_pstrdup(ctx->pool, argv[0]);
    h->exact = strpbrk(h->pattern, "*?[") == NULL;
    h->argv = args;
    return NULL;
}

static const char *set_timeout(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                               int argc, char *const *argv)
{
    apr_interval_time_t t;

    if (hf_config_parse_time(argv[0], &t) || t < apr_time_from_msec(1)
        || t > apr_time_from_sec(HF_MAX_TIMEOUT))
        return apr_psprintf(ctx->pool,
                            "'%s' is not a time from 1ms to %ds: a whole "
                            "number of seconds, or with a unit as httpd's "
                            "timeouts (500ms, 30s, 2min, 1h)",
                            argv[0], HF_MAX_TIMEOUT);
    cfg->timeout = (int)apr_time_as_msec(t);
    return NULL;
}

static const char *set_max_body(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                                int argc, char *const *argv)
{
    apr_int64_t v;
    const char *err = parse_number(ctx->pool, argv[0], 1,
                                   (apr_int64_t)1 << 30, &v);

    if (!err)
        cfg->max_body = (apr_off_t)v;
    return err;
}

static const char *set_max_events(const hf_config_ctx_t *ctx,
                                  hf_config_t *cfg, int argc,
                                  char *const *argv)
{
    return set_int(ctx->pool, argv[0], 1, 100000, &cfg->max_events);
}

static const char *set_spool(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                             int argc, char *const *argv)
{
    cfg->spool = resolve(ctx, argv[0]);
    return cfg->spool ? NULL : bad_path(ctx->pool, argv[0]);
}

static const char *set_concurrency(const hf_config_ctx_t *ctx,
                                   hf_config_t *cfg, int argc,
                                   char *const *argv)
{
    return set_int(ctx->pool, argv[0], 1, 1024, &cfg->concurrency);
}

static const char *set_retry(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                             int argc, char *const *argv)
{
    return set_int(ctx->pool, argv[0], 0, 100, &cfg->retry);
}

static const char *set_retry_delay(const hf_config_ctx_t *ctx,
                                   hf_config_t *cfg, int argc,
                                   char *const *argv)
{
    return set_int(ctx->pool, argv[0], 1, 3600, &cfg->retry_delay);
}

static const char *set_queue(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                             int argc, char *const *argv)
{
    /* libpq reads both forms; the key=value one is refused only because a
     * password in it would sit in httpd.conf (HrflowQueuePasswordFile). */
    if (strncmp(argv[0], "postgresql://", 13) != 0
        && strncmp(argv[0], "postgres://", 11) != 0)
        /* Not echoed: whatever it is may hold a password. */
        return "not a postgresql:// URI (its value is not shown: it may "
               "hold a password)";
    cfg->queue = apr_pstrdup(ctx->pool, argv[0]);
    return NULL;
}

static const char *set_queue_password_file(const hf_config_ctx_t *ctx,
                                           hf_config_t *cfg, int argc,
                                           char *const *argv)
{
    cfg->queue_password_file = resolve(ctx, argv[0]);
    return cfg->queue_password_file ? NULL : bad_path(ctx->pool, argv[0]);
}

static const char *set_queue_timeout(const hf_config_ctx_t *ctx,
                                     hf_config_t *cfg, int argc,
                                     char *const *argv)
{
    apr_interval_time_t t;

    if (hf_config_parse_time(argv[0], &t) || t < apr_time_from_msec(1)
        || t > apr_time_from_sec(3600))
        return apr_psprintf(ctx->pool,
                            "'%s' is not a time from 1ms to 3600s (5, "
                            "500ms, 10s)", argv[0]);
    cfg->queue_timeout = (int)apr_time_as_msec(t);
    return NULL;
}

const char *hf_config_queue_name_check(const char *name)
{
    const char *c;

    if (!*name || strlen(name) > 40 || apr_isdigit(*name))
        return "not 1 to 40 characters starting with a letter or _";
    for (c = name; *c; c++)
        if (!(apr_islower(*c) || apr_isdigit(*c) || *c == '_'))
            return "only a-z, 0-9 and _ may name the queue";
    return NULL;
}

static const char *set_queue_name(const hf_config_ctx_t *ctx,
                                  hf_config_t *cfg, int argc,
                                  char *const *argv)
{
    const char *err = hf_config_queue_name_check(argv[0]);

    if (err)
        return apr_psprintf(ctx->pool, "'%s': %s", argv[0], err);
    cfg->queue_name = apr_pstrdup(ctx->pool, argv[0]);
    return NULL;
}

static const char *set_flag(const hf_config_ctx_t *ctx, int *flag,
                            const char *arg)
{
    if (!strcasecmp(arg, "on"))
        *flag = 1;
    else if (!strcasecmp(arg, "off"))
        *flag = 0;
    else
        return apr_psprintf(ctx->pool, "'%s' is not on or off", arg);
    return NULL;
}

static const char *set_worker(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                              int argc, char *const *argv)
{
    return set_flag(ctx, &cfg->worker, argv[0]);
}

static const char *set_verify(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                              int argc, char *const *argv)
{
    return set_flag(ctx, &cfg->verify, argv[0]);
}

#define AS_ENTRY(name, set, how, min, max, scope, path, help) \
    {name, set, min, max, scope, path, help},
const hf_directive_t hf_config_directives[] = {
    HF_DIRECTIVE_LIST(AS_ENTRY) {NULL, NULL, 0, 0, 0, -1, NULL}};
#undef AS_ENTRY

const hf_directive_t *hf_config_directive_find(const char *name)
{
    const hf_directive_t *d;

    for (d = hf_config_directives; d->name; d++)
        if (!strcasecmp(d->name, name))
            return d;
    return NULL;
}

const char *hf_config_apply(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                            const hf_directive_t *d, int argc,
                            char *const *argv)
{
    const char *err;

    if (argc < d->min_args || (d->max_args >= 0 && argc > d->max_args))
        err = apr_psprintf(ctx->pool, "takes %s: %s",
                           d->max_args < 0
                               ? apr_psprintf(ctx->pool, "at least %d arguments",
                                              d->min_args)
                           : d->min_args == d->max_args
                               ? apr_psprintf(ctx->pool, "%d argument%s",
                                              d->min_args,
                                              d->min_args == 1 ? "" : "s")
                               : "a different number of arguments",
                           d->help);
    else
        err = d->set(ctx, cfg, argc, argv);
    return err ? apr_pstrcat(ctx->pool, d->name, ": ", err, NULL) : NULL;
}

/* ---- who may run a handler ------------------------------------------- */

/* Whether the user may use the permission of one class (S_IXOTH or
 * S_IROTH, shifted for the owner's and the group's) of st: the kernel's
 * mode check, one class only (the owner's, else the group's, else the
 * others'), root needing an x bit somewhere on a file only. */
static int user_may(const struct stat *st, const hf_user_t *u, mode_t other)
{
    int i;

    if (u->uid == 0)
        return other == S_IROTH || S_ISDIR(st->st_mode)
               || (st->st_mode & 0111);
    if ((long)st->st_uid == u->uid)
        return (st->st_mode & (other << 6)) != 0;
    for (i = 0; i < u->ngroups; i++)
        if ((long)st->st_gid == u->groups[i])
            return (st->st_mode & (other << 3)) != 0;
    return (st->st_mode & other) != 0;
}

static const char *refusal(apr_pool_t *p, const char *program,
                           const hf_user_t *u, const char *what,
                           const char *path, const struct stat *st)
{
    return apr_psprintf(p, "cannot run %s: user %s cannot %s%s%s (mode %04o, "
                        "owner uid %ld, group gid %ld)",
                        program, u->name, what, path ? " " : "",
                        path ? path : "", (unsigned)(st->st_mode & 07777),
                        (long)st->st_uid, (long)st->st_gid);
}

/* Every folder of path (as given) needs search permission. */
static const char *folders_enterable(apr_pool_t *p, const char *program,
                                     const char *path, const hf_user_t *u)
{
    char *dir = apr_pstrdup(p, path), *slash;
    struct stat st;

    for (slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (stat(dir, &st) == 0 && !user_may(&st, u, S_IXOTH))
            return refusal(p, program, u, "enter", dir, &st);
        *slash = '/';
    }
    return NULL;
}

/* A "#!" script is also read, by its interpreter, as the user. */
static int is_script(const char *path)
{
    char head[2];

    return hf_run_read_head(path, head, sizeof head) == 2 && head[0] == '#'
           && head[1] == '!';
}

const char *hf_config_runnable_by(apr_pool_t *p, const char *program,
                                  const hf_user_t *u)
{
    char real[PATH_MAX];
    struct stat st;
    const char *why;

    /* The folders named, and those a symlink leads through. */
    if ((why = folders_enterable(p, program, program, u)))
        return why;
    if (realpath(program, real)
        && (why = folders_enterable(p, program, real, u)))
        return why;
    if (stat(program, &st) != 0)
        return apr_psprintf(p, "cannot run %s: %s", program, strerror(errno));
    if (!user_may(&st, u, S_IXOTH))
        return refusal(p, program, u, "execute it", NULL, &st);
    if (is_script(program) && !user_may(&st, u, S_IROTH))
        return refusal(p, program, u, "read the script", NULL, &st);
    return NULL;
}

const char *hf_config_check_handlers(apr_pool_t *p, const hf_config_t *cfg,
                                     const hf_user_t *u)
{
    int i;

    for (i = 0; cfg->handlers && i < cfg->handlers->nelts; i++) {
        const char *why = hf_config_runnable_by(
            p, APR_ARRAY_IDX(cfg->handlers, i, hf_handler_t).argv[0], u);
        if (why)
            return apr_pstrcat(p, "HrflowHandler: ", why, NULL);
    }
    return NULL;
}

const char *hf_config_check_endpoint(apr_pool_t *p, const hf_config_t *cfg)
{
    if (hf_config_signature(cfg) == HF_SIG_REQUIRED
        && (!cfg->secrets || cfg->secrets->nelts == 0))
        return "HrflowSecret: no HrflowSecret or HrflowSecretFile while "
               "HrflowSignature is required";
    /* The dispatcher reads back at most HF_SPOOL_FILE_MAX bytes: a larger
     * body would be answered 202 and never run. */
    if (cfg->spool && hf_config_max_body(cfg) > HF_SPOOL_MAX_BODY)
        return apr_psprintf(p, "HrflowMaxBody: %" APR_OFF_T_FMT " bytes is "
                            "more than a spool file holds in durable mode "
                            "(HrflowSpool): at most %d",
                            hf_config_max_body(cfg), HF_SPOOL_MAX_BODY);
    return NULL;
}
