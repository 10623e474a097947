/*
 * hrflow.h - the receiver core shared by the Apache module and the CGI.
 *
 * Everything here is plain APR: no httpd header is included, so the CGI front
 * end links the same library.  The flow of one request is
 *
 *   hf_receive()  method, size, signature, content type, body -> events
 *   hf_deliver()  route each event, flatten it into variables, run its handler
 *   hf_receive_response_body()  the small JSON answer of SPEC section 5
 *
 * and each front end only moves bytes and log lines in and out.
 *
 * Errors, one convention: a function that can fail returns const char *,
 * NULL on success, else what went wrong as a lower-case phrase ("cannot
 * open %s: reason"), static or in the caller's pool; what it produces goes
 * through out-parameters.  Three kinds keep another shape, each for its
 * reason: constructors return the object or NULL, with the reason in
 * *err when there is one (hf_json_parse); a request's outcome is an
 * hf_rc_t, since it picks the HTTP status, with the reason in *err
 * (hf_events_from_json); and thin wrappers of system calls return 0 or -1
 * with errno, as the calls do, so that the caller names the file
 * (hf_spool_write, hf_spool_sync_dir, hf_spool_write_all).  Functions that log
 * their own failures (hf_run_event, hf_dispatch_run) return 0 or -1.
 */
#ifndef HRFLOW_H
#define HRFLOW_H

#include <stdatomic.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

/* ---- limits and defaults (SPEC sections 3 and 4) ----------------------- */
#define HF_DEFAULT_TIMEOUT 30         /* seconds a handler may run */
#define HF_MAX_TIMEOUT 86400          /* seconds: HrflowTimeout's ceiling */
#define HF_DEFAULT_MAX_BODY 1048576   /* bytes of request body */
#define HF_DEFAULT_MAX_EVENTS 100     /* events in one batch */
#define HF_DEFAULT_CONCURRENCY 4
#define HF_DEFAULT_RETRY 5
#define HF_DEFAULT_RETRY_DELAY 1      /* seconds before the first retry */
#define HF_MAX_VARS 512               /* payload variables per event */
#define HF_MAX_VAR_BYTES 65536        /* bytes of payload variable names and
                                         values: far below the kernel's
                                         128 KiB per environment string */
#define HF_MAX_NAME_BYTES 1024        /* bytes of one variable name */
#define HF_MAX_TYPE_BYTES 255         /* bytes of an event type */
#define HF_JSON_MAX_DEPTH 32          /* nesting of a body's arrays and
                                         objects, a batch's array included */
#define HF_ENVELOPE_DEPTH (HF_JSON_MAX_DEPTH + 1)  /* a spool file: the
                                         envelope object around the event */
#define HF_JSON_MAX_VALUES 100000     /* JSON values in one parsed text */
#define HF_JSON_MAX_CONTAINERS 10000  /* of them, objects and arrays: each
                                         costs json-c a hash table or a list */
#define HF_JSON_DEPTH_LIMIT 64        /* the deepest any parse may ask for */
#define HF_SPOOL_FILE_MAX (64 * 1024 * 1024)  /* bytes of a spool file the
                                         dispatcher reads back */
#define HF_ENVELOPE_OVERHEAD (1024 * 1024)    /* bytes the envelope adds
                                         around an event (ids, type,
                                         handler, last result) */
#define HF_SPOOL_MAX_BODY (HF_SPOOL_FILE_MAX - HF_ENVELOPE_OVERHEAD)
                                      /* HrflowMaxBody's ceiling in durable
                                         mode: an event of any accepted
                                         body fits a spool file */
#define HF_OUTPUT_MAX 8192            /* handler output kept for the log */
#define HF_KILL_GRACE_MS 2000         /* TERM to KILL, for a late handler */
#define HF_HANDLER_PATH "/usr/local/bin:/usr/bin:/bin"

/* ---- result codes: each maps to one HTTP status ------------------------ */
typedef enum {
    HF_OK = 0,
    HF_E_METHOD,       /* 405 */
    HF_E_TOO_LARGE,    /* 413: body or batch */
    HF_E_MEDIA_TYPE,   /* 415 */
    HF_E_MALFORMED,    /* 400 */
    HF_E_UNSIGNED,     /* 401: no signature while required */
    HF_E_SIGNATURE,    /* 401: signature does not match */
    HF_E_HANDLER,      /* 500: a handler failed or timed out */
    HF_E_CONFIG,       /* 500: the endpoint cannot work as configured */
    HF_E_SPOOL         /* 503 */
} hf_rc_t;

int hf_receive_rc_http_status(hf_rc_t rc);
struct hf_outcome_t;
/* 202 for events accepted into the spool, else as hf_receive_rc_http_status. */
int hf_receive_outcome_http_status(const struct hf_outcome_t *out);

/* ---- log sink: levels are syslog's, as httpd's APLOG_* ----------------- */

/* Every log line of the module and the CGI starts with its own number, in
 * the spirit of httpd's APLOGNO: "HF00315: event ...".  Numbers are never
 * reused for another message; README.md lists those an administrator
 * meets.  Ranges: 001xx mod_hrflow.c, 002xx mod_hrflow_spool.c, 003xx the
 * request (hf_receive.c, hf_deliver.c), 004xx the dispatcher, 005xx the
 * spool commit, 006xx the CGI. */
#define HFLOGNO(n) "HF" #n ": "

/* The version of configure.ac's AC_INIT. */
extern const char hf_version[];

#define HF_LOG_ERR 3
#define HF_LOG_WARNING 4
#define HF_LOG_NOTICE 5
#define HF_LOG_INFO 6
#define HF_LOG_DEBUG 7

typedef struct {
    void (*write)(void *ctx, int level, const char *msg);
    void *ctx;
    /* Optional: whether a line of this level would be kept, so that lines
     * nobody reads are not even formatted. */
    int (*wants)(void *ctx, int level);
} hf_logger_t;

void hf_log(const hf_logger_t *log, int level, apr_pool_t *p,
            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Byte c as it may be shown to a log or a terminal: itself, or for a control
 * character (DEL included) \xNN, so that text from outside can neither forge
 * a line nor drive a terminal.  keep_lines keeps \n and \t.  Writes at most
 * HF_ESCAPED_MAX bytes to out, no NUL; returns how many. */
#define HF_ESCAPED_MAX 4
int hf_log_escape_byte(unsigned char c, int keep_lines, char *out);

/* s escaped as hf_log_escape_byte does, keep_lines 0: a new string. */
char *hf_log_escape(apr_pool_t *p, const char *s);

/* ---- base64 and hex (hf_codec.c) ---------------------------------------- */

/* Decodes base64 in either alphabet (+/ or -_), padded or not: NULL, or
 * what is wrong (bad character, mixed alphabets, bad length/padding). */
const char *hf_codec_base64_decode(apr_pool_t *p, const char *src,
                                   apr_size_t len, unsigned char **out,
                                   apr_size_t *outlen);
/* Decodes hex of either case: NULL, or what is wrong (odd length, a
 * non-hex character). */
const char *hf_codec_hex_decode(apr_pool_t *p, const char *src, apr_size_t len,
                                unsigned char **out, apr_size_t *outlen);
void hf_codec_hex_encode(const unsigned char *src, apr_size_t len, char *dst);
/* URL-safe base64 without padding, as HrFlow signs: a new string. */
char *hf_codec_base64url_encode(apr_pool_t *p, const unsigned char *src,
                                apr_size_t len);

/* ---- JSON (hf_json.c): the only file that sees json-c ------------------- */
typedef struct json_object hf_json_t;

/* Checks that [text, text+len) is exactly one JSON value as RFC 8259 defines
 * it (white space around it allowed), nested at most max_depth levels (at
 * most HF_JSON_DEPTH_LIMIT); NULL, or what is wrong.  Linear time, no
 * recursion.  Strings must be UTF-8 unless flags has HF_JSON_RAW_BYTES. */
#define HF_JSON_RAW_BYTES 1
const char *hf_json_check(const char *text, apr_size_t len, int max_depth,
                          int flags);
/* What hf_json_measure counts while it checks. */
typedef struct {
    apr_size_t values;      /* every value: scalars, objects and arrays */
    apr_size_t containers;  /* objects and arrays */
    apr_size_t elements;    /* the top-level array's; 0 for another value */
} hf_json_size_t;
/* hf_json_check that also fills *size (as far as the scan got). */
const char *hf_json_measure(const char *text, apr_size_t len, int max_depth,
                            int flags, hf_json_size_t *size);
/* Whether a tree of that size may be built: at most HF_JSON_MAX_VALUES
 * values and HF_JSON_MAX_CONTAINERS objects and arrays. */
int hf_json_size_ok(const hf_json_size_t *size);
/* Parses text that hf_json_check accepts and hf_json_size_ok allows (and
 * nothing else); NULL and *err on failure.  The tree lives as long as the
 * pool. */
hf_json_t *hf_json_parse_ex(apr_pool_t *p, const char *text, apr_size_t len,
                            int max_depth, int flags, const char **err);
/* hf_json_parse_ex at HF_JSON_MAX_DEPTH, UTF-8 strings. */
hf_json_t *hf_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                         const char **err);
hf_json_t *hf_json_new_object(apr_pool_t *p);
int hf_json_is_object(const hf_json_t *j);
int hf_json_is_array(const hf_json_t *j);
apr_size_t hf_json_array_length(const hf_json_t *j);
hf_json_t *hf_json_array_get(const hf_json_t *j, apr_size_t i);
/* The member's string value, or NULL when absent, not a string, or holding
 * a NUL character (\u0000) that a C string cannot. */
const char *hf_json_get_string(const hf_json_t *obj, const char *key);
/* The member, any type, or NULL. */
hf_json_t *hf_json_get(const hf_json_t *obj, const char *key);
/* A string value, or NULL when j is not a string or holds a NUL. */
const char *hf_json_as_string(const hf_json_t *j);
/* An integer member, or fallback when absent or not an integer. */
apr_int64_t hf_json_get_int(const hf_json_t *obj, const char *key,
                            apr_int64_t fallback);
/* s as a JSON string literal, quotes included. */
const char *hf_json_quote(apr_pool_t *p, const char *s);
void hf_json_put_string(hf_json_t *obj, const char *key, const char *val);
/* Adds child (which stays owned by its own pool) as a member of obj. */
void hf_json_put(hf_json_t *obj, const char *key, hf_json_t *child);
const char *hf_json_text(apr_pool_t *p, const hf_json_t *j, apr_size_t *len);
/* Finds the text of each element of a JSON array as it stands in the input,
 * with the scanner of hf_json_check: NULL, or why text is not an array. */
const char *hf_json_array_spans(const char *text, apr_size_t len,
                                apr_array_header_t *starts,
                                apr_array_header_t *lens);
/* Bytes [start, start+len) of a text. */
typedef struct {
    apr_size_t start, len;
} hf_json_span_t;
/* When text is exactly one JSON object with at least one member (checked as
 * hf_json_check does), finds its last member with the same scanner: the name
 * as written between its quotes (escapes left as they are) and the value's
 * text.  0, or -1 when text is not such an object. */
int hf_json_last_member(const char *text, apr_size_t len, int max_depth,
                        int flags, hf_json_span_t *name,
                        hf_json_span_t *value);

/* Calls leaf() for the scalars under object j, in order, with the path joined
 * by '_' after prefix ("HRFLOW_profile_source_key", path_len bytes) and the
 * value as SPEC 4 wants it.  leaf returns non-zero when it wants no more
 * leaves.  Returns how many leaves were not passed to leaf: those after that,
 * and those whose path would be longer than max_path.  The walk allocates
 * one path buffer, nothing per leaf. */
typedef int hf_json_flatten_fn(void *ctx, const char *path,
                               apr_size_t path_len, const char *value,
                               apr_size_t vlen);
apr_size_t hf_json_flatten(apr_pool_t *p, const hf_json_t *j,
                           const char *prefix, apr_size_t max_path,
                           hf_json_flatten_fn *leaf, void *ctx);
/* hf_json_flatten without a stop, paths up to HF_MAX_NAME_BYTES. */
typedef void hf_json_leaf_fn(void *ctx, const char *path, const char *value,
                             apr_size_t vlen);
void hf_json_walk(apr_pool_t *p, const hf_json_t *j, const char *prefix,
                  hf_json_leaf_fn *leaf, void *ctx);
/* hf_json_flatten of json-c's tree of text, an object that hf_json_check
 * accepts, read from the text without building the tree: the same leaves
 * in the same order, the same count returned.  A value is not always
 * followed by a NUL (a string without escapes is passed as it stands in
 * the text).  Where the text alone cannot say what json-c makes of it (an
 * object holding a member name twice, an escaped surrogate pair for
 * U+xD800-U+xDFFF), it stops, sets *fallback and returns 0: the caller
 * flattens json-c's tree instead (leaf may have been called before). */
apr_size_t hf_json_flatten_text(apr_pool_t *p, const char *text,
                                apr_size_t len, const char *prefix,
                                apr_size_t max_path,
                                hf_json_flatten_fn *leaf, void *ctx,
                                int *fallback);
/* hf_json_get_string(tree of text, "type") for an object text that
 * hf_json_check accepts, from the text: the value of its last member named
 * "type" (names unescaped), as a new string; NULL when there is none, it is
 * not a string, or it holds a \u0000 or an escaped pair that json-c
 * versions read differently (no valid type holds either). */
const char *hf_json_text_type(apr_pool_t *p, const char *text,
                              apr_size_t len);
/* hf_json_text of json-c's tree of text (a value hf_json_check accepts),
 * written from the text: NULL with *fallback set where only the tree can
 * tell (the cases of hf_json_flatten_text). */
const char *hf_json_text_canonical(apr_pool_t *p, const char *text,
                                   apr_size_t len, apr_size_t *out_len,
                                   int *fallback);
/* The n bytes of s as json-c writes a string: quoted and escaped. */
const char *hf_json_text_string(apr_pool_t *p, const char *s, apr_size_t n);

/* ---- form bodies (hf_form.c) -------------------------------------------- */
typedef struct {
    const char *name;
    const char *value;
} hf_form_field_t;

/* Splits an x-www-form-urlencoded body into an array of hf_form_field_t;
 * NULL for a bad %-escape or a field with no name. */
apr_array_header_t *hf_form_parse(apr_pool_t *p, const char *body,
                                  apr_size_t len);

/* ---- events (hf_event.c) ------------------------------------------------ */
typedef struct {
    hf_json_t *json;        /* the event object; NULL when read from text
                               alone (hf_events_from_json_text) */
    const char *text;       /* its JSON as received */
    apr_size_t len;
    const char *type;       /* OBJECT.ACTION.STATUS */
    char id[65];            /* SHA-256 of text, lowercase hex */
    char delivery_id[33];   /* unique per event received */
    int index;
    apr_table_t *vars;      /* filled by hf_deliver */
} hf_event_t;

typedef enum { HF_BODY_JSON, HF_BODY_FORM, HF_BODY_OTHER } hf_body_kind_t;
hf_body_kind_t hf_event_body_kind(const char *content_type);

int hf_event_type_valid(const char *type);

/* Turn a body into events (array of hf_event_t *).  Returns HF_OK, or
 * HF_E_MALFORMED / HF_E_TOO_LARGE with *err naming the problem. */
hf_rc_t hf_events_from_json(apr_pool_t *p, const char *text, apr_size_t len,
                            int max_events, apr_array_header_t **events,
                            const char **err);
/* hf_events_from_json with the same checks and errors, from the text alone:
 * each event's json is NULL (hf_env_build reads its text). */
hf_rc_t hf_events_from_json_text(apr_pool_t *p, const char *text,
                                 apr_size_t len, int max_events,
                                 apr_array_header_t **events,
                                 const char **err);
hf_rc_t hf_events_from_form(apr_pool_t *p, const char *body, apr_size_t len,
                            apr_array_header_t **events, const char **err);
/* hf_events_from_form with the same checks, errors and event text, written
 * without a tree (json NULL), but where only the tree can tell. */
hf_rc_t hf_events_from_form_text(apr_pool_t *p, const char *body,
                                 apr_size_t len, apr_array_header_t **events,
                                 const char **err);

/* ---- signatures (hf_verify.c) ------------------------------------------- */
typedef struct {
    int matched;               /* an HMAC matched under some secret */
    const unsigned char *payload;  /* SIG.PAYLOAD form: decoded payload */
    apr_size_t payload_len;
    int payload_bad;           /* SIG.PAYLOAD form, PAYLOAD not base64 */
} hf_signature_t;

/* Checks a signature header value against every secret (const char *) and
 * every variant of SPEC section 2.  Comparisons are constant time. */
void hf_verify_signature(apr_pool_t *p, const char *value, const char *body,
                         apr_size_t body_len, const apr_array_header_t *secrets,
                         hf_signature_t *out);
/* ---- hashes (hf_sha256.c) ----------------------------------------------- */
void hf_sha256(const void *data, apr_size_t len, unsigned char out[32]);
/* The HMAC-SHA256 of data under key, as 32 raw bytes. */
void hf_sha256_hmac(const char *key, const void *data, apr_size_t len,
                    unsigned char mac[32]);

/* ---- handler routing (hf_route.c) --------------------------------------- */
typedef struct {
    const char *pattern;
    int exact;                 /* no wildcard: beats every pattern */
    const char *const *argv;   /* argv[0] is the program, NULL-terminated */
} hf_handler_t;

/* NULL when pattern is a valid event-type pattern, else the reason. */
const char *hf_route_pattern_check(const char *pattern);
/* Exact beats pattern; among patterns the first listed wins.  NULL: none. */
const hf_handler_t *hf_route(const apr_array_header_t *handlers,
                             const char *type);

/* ---- configuration (hf_config.c) ---------------------------------------- */
#define HF_UNSET (-1)
typedef enum {
    HF_SIG_REQUIRED = 0,
    HF_SIG_OPTIONAL,
    HF_SIG_OFF
} hf_sig_mode_t;

typedef struct {
    apr_array_header_t *secrets;   /* const char *; NULL: inherit */
    apr_array_header_t *handlers;  /* hf_handler_t; NULL: none here */
    const char *signature_header;  /* NULL: the three of SPEC 2 */
    const char *spool;
    int signature;                 /* hf_sig_mode_t or HF_UNSET */
    int timeout;                   /* milliseconds */
    apr_off_t max_body;
    int max_events;
    int concurrency;
    int retry;
    int retry_delay;
    const char *queue;             /* HrflowQueue: a libpq URI */
    const char *queue_password_file;
    const char *queue_name;
    int queue_timeout;             /* milliseconds */
    int worker;                    /* HrflowWorker: 0 or 1 */
    int verify;                    /* HrflowVerify: 0 or 1 (gateway mode) */
} hf_config_t;

/* Where a directive may stand. */
#define HF_SCOPE_DIR 1     /* server, vhost, <Location>, <Directory> */
#define HF_SCOPE_SERVER 2  /* server and vhost only */

typedef struct {
    apr_pool_t *pool;      /* lives as long as the configuration */
    const char *base_dir;  /* relative paths are taken from here */
} hf_config_ctx_t;

typedef const char *hf_directive_fn(const hf_config_ctx_t *ctx,
                                    hf_config_t *cfg, int argc,
                                    char *const *argv);
typedef struct {
    const char *name;
    hf_directive_fn *set;
    int min_args;
    int max_args;          /* -1: no limit */
    int scope;
    int path_arg;          /* the argument that is a path, or -1: the
                              module resolves it under ServerRoot, the CGI
                              beside its config file */
    const char *help;
} hf_directive_t;

/* Every directive, once: the module's command table and hf_config_directives[]
 * (read by the CGI) are both expanded from this list.  HOW is httpd's
 * argument handling for it (AP_INIT_<HOW>): TAKE1 or TAKE_ARGV. */
#define HF_DIRECTIVE_LIST(X) \
    X("HrflowSecret", set_secret, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "a webhook secret; repeat for rotation") \
    X("HrflowSecretFile", set_secret_file, TAKE1, 1, 1, HF_SCOPE_DIR, 0, \
      "file of webhook secrets, one per line, read at startup") \
    X("HrflowSignature", set_signature, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "required | optional | off") \
    X("HrflowSignatureHeader", set_signature_header, TAKE1, 1, 1, \
      HF_SCOPE_DIR, -1, "the only request header that carries the signature") \
    X("HrflowHandler", set_handler, TAKE_ARGV, 2, -1, HF_SCOPE_DIR, 1, \
      "PATTERN PROGRAM [ARG...]: run PROGRAM for matching event types") \
    X("HrflowTimeout", set_timeout, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "time a handler may run before it is killed: 30, 30s, 500ms, 2min") \
    X("HrflowMaxBody", set_max_body, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "largest accepted request body, in bytes") \
    X("HrflowMaxEvents", set_max_events, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "largest accepted batch, in events") \
    X("HrflowSpool", set_spool, TAKE1, 1, 1, HF_SCOPE_SERVER, 0, \
      "directory of the durable spool") \
    X("HrflowConcurrency", set_concurrency, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "handlers running at once in durable mode") \
    X("HrflowRetry", set_retry, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "further tries of a failed handler in durable mode") \
    X("HrflowRetryDelay", set_retry_delay, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "seconds before the first retry; each further one waits twice as long") \
    X("HrflowQueue", set_queue, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "libpq URI of the shared PostgreSQL queue (fleet mode)") \
    X("HrflowQueuePasswordFile", set_queue_password_file, TAKE1, 1, 1, \
      HF_SCOPE_SERVER, 0, "file holding the queue database's password, " \
      "read at startup") \
    X("HrflowQueueTimeout", set_queue_timeout, TAKE1, 1, 1, HF_SCOPE_SERVER, \
      -1, "longest a request waits for its commit to the queue: 5, 500ms") \
    X("HrflowQueueName", set_queue_name, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "prefix of the queue's table and notification channel") \
    X("HrflowWorker", set_worker, TAKE1, 1, 1, HF_SCOPE_SERVER, -1, \
      "on | off: this server also starts a worker of the queue") \
    X("HrflowVerify", set_verify, TAKE1, 1, 1, HF_SCOPE_DIR, -1, \
      "on | off: check each request before the section's own handler " \
      "runs (gateway mode)")

/* The same list as a table, ending with a NULL name; HF_DIRECTIVE_<set> is
 * the index of a directive's entry (the module's cmd->info points there). */
extern const hf_directive_t hf_config_directives[];
#define HF_AS_INDEX(name, set, how, min, max, scope, path, help) \
    HF_DIRECTIVE_##set,
enum { HF_DIRECTIVE_LIST(HF_AS_INDEX) HF_DIRECTIVE_COUNT };
#undef HF_AS_INDEX

hf_config_t *hf_config_create(apr_pool_t *p);
hf_config_t *hf_config_merge(apr_pool_t *p, const hf_config_t *base,
                             const hf_config_t *add);
const hf_directive_t *hf_config_directive_find(const char *name);
/* Applies one directive; NULL or an error message "Name: reason". */
const char *hf_config_apply(const hf_config_ctx_t *ctx, hf_config_t *cfg,
                            const hf_directive_t *d, int argc,
                            char *const *argv);
/* Durable mode's settings are the server's (HF_SCOPE_SERVER): the module
 * keeps them in its server config, and an endpoint sees them through this,
 * a copy of dir with server's spool, concurrency, retry and retry delay. */
hf_config_t *hf_config_with_server(apr_pool_t *p, const hf_config_t *dir,
                                   const hf_config_t *server);
/* One spool has one dispatcher: NULL when two servers' settings for their
 * spool agree, else the first directive they differ on, with both values
 * ("HrflowRetry 5 and 0"). */
const char *hf_config_server_conflict(apr_pool_t *p, const hf_config_t *a,
                                      const hf_config_t *b);
/* A file of secrets (HrflowSecretFile, HrflowQueuePasswordFile), read as
 * root: its bytes in a malloc'ed buffer, NUL-terminated (to be wiped and
 * freed by the caller); NULL or why not ("cannot read PATH: ...").  Opened
 * without blocking, so that a FIFO is refused and not waited for; only a
 * regular file of at most 1 MiB. */
const char *hf_config_read_secret_file(apr_pool_t *p, const char *path,
                                       char **text, apr_size_t *len);
/* The user handlers run as (the module's User), with its groups (primary
 * and supplementary). */
typedef struct {
    const char *name;
    long uid;
    const long *groups;
    int ngroups;
} hf_user_t;
/* Whether u may run program, every folder above it searchable: the mode
 * bits as the kernel reads them (ACLs are not read).  NULL, or the reason
 * naming the file or folder, the user and the mode. */
const char *hf_config_runnable_by(apr_pool_t *p, const char *program,
                                  const hf_user_t *u);
/* hf_config_runnable_by for every handler of cfg, "HrflowHandler: ...". */
const char *hf_config_check_handlers(apr_pool_t *p, const hf_config_t *cfg,
                                     const hf_user_t *u);
/* Checks what only the whole endpoint shows; NULL or the reason. */
const char *hf_config_check_endpoint(apr_pool_t *p, const hf_config_t *cfg);

/* A time as httpd's ap_timeout_parameter_parse reads it (seconds by
 * default; ms, s, mi or min, h suffixes, any case), but refusing anything
 * after the unit: NULL, or why s is not such a time.  HrflowTimeout in
 * both front ends. */
const char *hf_config_parse_time(const char *s, apr_interval_time_t *out);

/* Values with their defaults applied. */
int hf_config_signature(const hf_config_t *cfg);
/* HrflowTimeout in milliseconds, and in whole seconds rounded up (a spool
 * file's handler timeout). */
int hf_config_timeout_ms(const hf_config_t *cfg);
int hf_config_timeout(const hf_config_t *cfg);
apr_off_t hf_config_max_body(const hf_config_t *cfg);
int hf_config_max_events(const hf_config_t *cfg);
int hf_config_concurrency(const hf_config_t *cfg);
int hf_config_retry(const hf_config_t *cfg);
int hf_config_retry_delay(const hf_config_t *cfg);
#define HF_DEFAULT_QUEUE_TIMEOUT_MS 5000
#define HF_DEFAULT_QUEUE_NAME "hrflow"
int hf_config_queue_timeout_ms(const hf_config_t *cfg);
const char *hf_config_queue_name(const hf_config_t *cfg);
int hf_config_worker(const hf_config_t *cfg);
/* HrflowVerify on (gateway mode, SPEC 9); off when unset. */
int hf_config_verify(const hf_config_t *cfg);
/* NULL when name can prefix the queue's table, functions and channel: a
 * lower-case SQL identifier, [a-z_][a-z0-9_]*, at most 40 bytes. */
const char *hf_config_queue_name_check(const char *name);

/* ---- variables (hf_env.c) ----------------------------------------------- */
typedef struct {
    int count;            /* events in the batch */
    int verified;         /* signature checked and matched */
    int attempt;
} hf_batch_t;

/* Builds an event's variables (SPEC 4); *dropped counts what the limits
 * left out. */
apr_table_t *hf_env_build(apr_pool_t *p, const hf_event_t *ev,
                          const hf_batch_t *batch, int *dropped);
/* NULL-terminated NAME=VALUE array: PATH, then the table. */
const char **hf_env_block(apr_pool_t *p, const apr_table_t *vars);

/* ---- running a handler (hf_run.c) --------------------------------------- */
typedef struct {
    const char *const *argv;
    const char *const *envp;
    const char *input;           /* written to standard input */
    apr_size_t input_len;
    int timeout;                 /* seconds */
    apr_size_t output_max;       /* bytes of output kept */
    atomic_int *cancel;          /* when set becomes non-zero: stop it */
    apr_time_t deadline;         /* 0, or stopped by then as by timeout */
} hf_run_spec_t;

typedef struct {
    int started;                 /* 0: could not be started, see error */
    long pid;                    /* the handler's, when started */
    const char *error;
    int exit_code;               /* when exited normally */
    int signal;                  /* when killed by a signal */
    int timed_out;
    int cancelled;               /* stopped through spec->cancel */
    apr_interval_time_t elapsed;
    char *output;                /* standard output and error, merged */
    apr_size_t output_len;
    apr_size_t output_dropped;   /* bytes past output_max */
} hf_run_result_t;

void hf_run(apr_pool_t *p, const hf_run_spec_t *spec, hf_run_result_t *res);
/* From now on, this process's handlers are killed when it dies (the
 * dispatcher's: fork and exec with a parent-death signal, instead of
 * posix_spawn). */
void hf_run_die_with_us(void);
int hf_run_succeeded(const hf_run_result_t *res);
/* "exit 3", "signal 9", "timeout", "stopped", "not started" */
const char *hf_run_describe(apr_pool_t *p, const hf_run_result_t *res);
/* NULL, or why a script cannot run because its first line ends in a
 * carriage return ("#!/bin/sh\r\n": the kernel then looks for an
 * interpreter named "/bin/sh\r" and exec fails with ENOENT). */
const char *hf_run_check_crlf(apr_pool_t *p, const char *program);
/* Up to size first bytes of path, -1 if it is not a regular file (or
 * cannot be read).  Root reads handlers at startup, perhaps through a
 * folder the server's user can write: a FIFO or a device there (whose open
 * alone can act, as /dev/watchdog's) is never opened for reading. */
ssize_t hf_run_read_head(const char *path, char *buf, apr_size_t size);

/* ---- one request (hf_receive.c) ----------------------------------------- */
typedef struct {
    const char *method;
    const char *content_type;
    const char *body;
    apr_size_t body_len;
    int body_too_large;          /* the front end stopped reading */
    /* Request header lookup, case-insensitive. */
    const char *(*header)(void *ctx, const char *name);
    void *header_ctx;
} hf_request_t;

typedef struct hf_outcome_t {
    hf_rc_t rc;
    const char *error;           /* machine-readable reason */
    apr_array_header_t *events;  /* hf_event_t * */
    int verified;
    int handled, ignored, failed;
    int not_run;                 /* left after a failure, a spent time
                                    budget or a client gone */
    int queued;                  /* written to the spool: answer 202 */
} hf_outcome_t;

void hf_receive(apr_pool_t *p, const hf_config_t *cfg,
                const hf_request_t *req, hf_outcome_t *out);
/* hf_receive that also gives the sender's signature as checked: its
 * decoded payload, when the events came from it (zeroed when refused
 * before or at the signature). */
void hf_receive_signed(apr_pool_t *p, const hf_config_t *cfg,
                       const hf_request_t *req, hf_outcome_t *out,
                       hf_signature_t *sig);
/* hf_receive_signed whose JSON events have no json-c tree, only their text
 * (hf_events_from_json_text): for a gateway, which wants the first event's
 * variables and nothing else of the events. */
void hf_receive_text(apr_pool_t *p, const hf_config_t *cfg,
                     const hf_request_t *req, hf_outcome_t *out,
                     hf_signature_t *sig);
/* Runs each event's handler in order, stopping at the first failure.  The
 * batch has one time budget, HrflowTimeout seconds from the start:
 * a handler still running then is stopped as by its timeout, and no other
 * starts. */
void hf_deliver(apr_pool_t *p, const hf_config_t *cfg, hf_outcome_t *out,
                const hf_logger_t *log);
/* Asked before each handler starts: non-zero when nobody waits for the
 * answer any more. */
typedef int hf_gone_fn(void *ctx);
/* hf_deliver that also stops starting handlers once gone(ctx). */
void hf_deliver_watched(apr_pool_t *p, const hf_config_t *cfg,
                        hf_outcome_t *out, const hf_logger_t *log,
                        hf_gone_fn *gone, void *gone_ctx);
/* ev's handler; none: counted in out->ignored and logged. */
const hf_handler_t *hf_route_event(apr_pool_t *p, const hf_config_t *cfg,
                                   const hf_event_t *ev, hf_outcome_t *out,
                                   const hf_logger_t *log);
/* Builds ev->vars (hf_env_build) and logs what the limits left out. */
void hf_event_vars(apr_pool_t *p, hf_event_t *ev, const hf_batch_t *batch,
                   const hf_logger_t *log);
/* Runs one event's handler (its vars built) and logs its output and one
 * result line; attempt 0 leaves the attempt out.  0 on success. */
int hf_run_event(apr_pool_t *p, const hf_event_t *ev,
                 const char *const *argv, int timeout, int attempt,
                 atomic_int *cancel, const hf_logger_t *log,
                 hf_run_result_t *res);
const char *hf_receive_response_body(apr_pool_t *p, const hf_outcome_t *out);
/* Logs why a request was refused, at the level its cause deserves. */
void hf_receive_log_refusal(apr_pool_t *p, const hf_config_t *cfg,
                            const hf_outcome_t *out, const hf_logger_t *log);

/* ---- the durable spool (hf_spool.c) ------------------------------------ */
extern const char *const hf_spool_states[];  /* tmp new run retry failed done */

typedef struct {
    const char *name;            /* NAME.json, the same in every state */
    const char *delivery_id;
    const char *event_id;
    const char *type;
    const char *order_key;       /* "profile:KEY", "job:KEY" or NULL */
    apr_time_t received;
    int attempt;                 /* tries made so far */
    apr_time_t next_attempt;     /* not before this; 0: at once */
    const char *last_result;     /* of the last try, or NULL */
    int index, count, verified;  /* as in hf_batch_t */
    int timeout;                 /* HrflowTimeout of its endpoint */
    const char *const *argv;     /* the handler its endpoint mapped */
    const char *text;            /* the event, as received */
    apr_size_t len;
} hf_envelope_t;

const char *hf_spool_path(apr_pool_t *p, const char *dir, const char *state,
                          const char *name);
/* Creates DIR and its state folders, owned by uid:gid (-1: leave), never
 * following a link; refuses (with the path) a link or anything else that
 * is not a folder where a folder belongs, a non-regular file in a state
 * folder, and (uid >= 0) a folder above DIR that uid could write to.
 * NULL or the reason. */
const char *hf_spool_prepare(apr_pool_t *p, const char *dir, int uid, int gid);
/* The same checks, creating and changing nothing (configtest). */
const char *hf_spool_inspect(apr_pool_t *p, const char *dir, int uid);
/* "profile:KEY" or "job:KEY", or NULL; a KEY longer than HF_ORDER_KEY_MAX
 * bytes as "sha256:" and its digest in hex. */
#define HF_ORDER_KEY_MAX 512
const char *hf_spool_order_key(apr_pool_t *p, const hf_event_t *ev);
/* TIME-INDEX-DELIVERY[-KEYTAG].json: arrival order sorts by name, and the
 * tag (a hash of the order key) lets the dispatcher order events without
 * reading them.  Two keys sharing a tag only wait for each other. */
const char *hf_spool_event_name(apr_pool_t *p, apr_time_t received,
                                int index, const char *delivery_id,
                                const char *order_key);
/* The tag of a name, or NULL when its event has no order key. */
const char *hf_spool_name_key(apr_pool_t *p, const char *name);
/* Delay before try attempt+1: first_delay doubled per try, at most 1 h. */
apr_interval_time_t hf_spool_retry_delay(int attempt, int first_delay);
char *hf_spool_envelope_encode(apr_pool_t *p, const hf_envelope_t *e,
                               apr_size_t *len);
const char *hf_spool_envelope_parse(apr_pool_t *p, const char *text,
                                    apr_size_t len, hf_envelope_t *e);
const char *hf_spool_envelope_read(apr_pool_t *p, const char *path,
                                   hf_envelope_t *e);
/* hf_spool_envelope_read of a file that uid owner owns (the dispatcher's own
 * user: a file someone else put in the spool names a handler of theirs). */
const char *hf_spool_envelope_read_owned(apr_pool_t *p, const char *path,
                                         long owner, hf_envelope_t *e);
const char *hf_spool_read_file(apr_pool_t *p, const char *path, char **text,
                               apr_size_t *len);
/* Writes a file; keep_open: returns the open fd unsynced, else syncs and
 * returns 0.  -1 with errno, and no file left, on failure. */
int hf_spool_write(const char *path, const void *data, apr_size_t len,
                   int keep_open);
int hf_spool_sync_dir(const char *path);
/* Writes all of data to fd (retrying short writes); 0, or -1 with errno. */
int hf_spool_write_all(int fd, const void *data, apr_size_t len);
/* Rewrites e's file in state from and moves it to state to, durably. */
const char *hf_spool_rewrite(apr_pool_t *p, const char *dir,
                             const hf_envelope_t *e, const char *from,
                             const char *to);
int hf_spool_is_event_name(const char *name);
/* The event file names of a state folder, in no order; NULL when it cannot
 * be read. */
apr_array_header_t *hf_spool_list(apr_pool_t *p, const char *dir,
                                  const char *state);
/* Events in a state folder, or -1 when it cannot be read. */
int hf_spool_count(apr_pool_t *p, const char *dir, const char *state);

/* ---- accepting into the spool (hf_commit.c) ----------------------------- */
/* Group commit: the concurrent requests of one process share their syncs. */
typedef struct hf_committer_t hf_committer_t;
/* NULL when its lock cannot be created. */
hf_committer_t *hf_committer_create(apr_pool_t *p, const char *dir);
/* Routes each event of out, writes those with a handler to the spool and
 * makes them durable: out->queued, or rc HF_E_SPOOL. */
void hf_commit_accept(apr_pool_t *p, const hf_config_t *cfg,
                      hf_committer_t *committer, hf_outcome_t *out,
                      const hf_logger_t *log);
/* The envelope of one routed event, as its endpoint maps it now (handler
 * h); the spool and the queue (hf_queue_accept) store the same. */
void hf_commit_envelope(apr_pool_t *p, const hf_config_t *cfg,
                        const hf_outcome_t *out, const hf_event_t *ev,
                        const hf_handler_t *h, apr_time_t now,
                        hf_envelope_t *e);
/* Groups committed (each: one round of data syncs, one sync of new/) and
 * events made durable by this process so far. */
void hf_committer_stats(hf_committer_t *c, apr_uint64_t *groups,
                        apr_uint64_t *events);

/* ---- the dispatcher (hf_store_spool.c, on hf_sched.c) ------------------ */
typedef struct {
    const char *dir;
    int concurrency;
    int retry;                   /* further tries after the first */
    int retry_delay;             /* seconds before the first retry */
    const hf_logger_t *log;
    /* Set by a signal handler, read by every thread: finish and return.
     * A lock-free atomic is safe in both places; a volatile sig_atomic_t
     * only in the handler's own thread. */
    atomic_int *stop;
    int wake_fd;                 /* readable when stop is set, or -1 */
} hf_dispatch_spec_t;

/* Runs the spool's handlers until *stop; 0, or -1 when it cannot start. */
int hf_dispatch_run(apr_pool_t *p, const hf_dispatch_spec_t *spec);

#endif
