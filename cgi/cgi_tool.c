/*
 * cgi_tool.c - hrflow.cgi run from a terminal: check a config file as
 * `apachectl configtest` would, and sign a test event so that curl can send
 * it to either front end.
 *
 * The secret is never an argument: `ps` and shell history show those.  It
 * comes from the config, from a secret file in HrflowSecretFile's format
 * (the module's own, for a module user), or from standard input.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"
#include "config.h"

static const char usage[] =
    "usage: " HRFLOW_CGI_NAME " --check [--allow-missing-handlers] FILE\n"
    "       " HRFLOW_CGI_NAME " --sign [--config FILE | --secret-file FILE]"
    " [EVENT_FILE]\n"
    "       " HRFLOW_CGI_NAME " --help | --version\n"
    "\n"
    "Run by a web server (CGI/1.1), receives HrFlow.ai webhook events: it\n"
    "verifies their signature and runs the handler mapped to each type.\n"
    "Its configuration is $" HRFLOW_CONFIG_ENV ", else " HRFLOW_CONFIG_FILE
    " beside the program.\n"
    "\n"
    "  --check FILE   validate a config file (exit 0: usable)\n"
    "  --allow-missing-handlers\n"
    "                 with --check: a handler program that is not there yet\n"
    "                 is a warning, not an error (checking before upload)\n"
    "  --sign         print an HTTP-HRFLOW-SIGNATURE value for the event JSON\n"
    "                 in EVENT_FILE or on standard input, with the first\n"
    "                 secret of the config (default: the one the program\n"
    "                 uses) or of the secret file:\n"
    "                   curl -H \"HTTP-HRFLOW-SIGNATURE: $(" HRFLOW_CGI_NAME
    " --sign < ev.json)\" \\\n"
    "                        -X POST https://example.com/cgi-bin/"
    HRFLOW_CGI_NAME "\n"
    "  --config FILE  the config to use instead of the default\n"
    "  --secret-file FILE\n"
    "                 sign with the secrets of FILE, in HrflowSecretFile's\n"
    "                 format (one per line, # comments): the module's own\n"
    "                 secret file works; '-' reads it from standard input\n"
    "                 (then the event is EVENT_FILE).  Secrets are never\n"
    "                 taken from the command line: ps and history show it.\n";

static int check(apr_pool_t *p, const char *path, int flags)
{
    hf_config_t *cfg;
    const char *err =
        cgi_conffile_read(p, path, &cfg, &cgi_serve_stderr_log, flags);

    if (err) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (!cfg->handlers || cfg->handlers->nelts == 0)
        fprintf(stderr, "%s: no HrflowHandler: every event will be answered "
                "200 and ignored\n", path);
    printf("%s: Syntax OK\n", path);
    return 0;
}

/* Reads all of fd, up to max bytes; NULL past it (or on a read error). */
static char *read_all_fd(apr_pool_t *p, int fd, apr_size_t max,
                         apr_size_t *len)
{
    char *buf = apr_palloc(p, max + 1);
    ssize_t n;

    *len = 0;
    while ((n = read(fd, buf + *len, max + 1 - *len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (*len += (apr_size_t)n) > max)
            return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* The first secret of text in HrflowSecretFile's format: one per line,
 * blanks around it dropped, blank and '#' lines skipped; NULL if none. */
static const char *first_secret(apr_pool_t *p, const char *text,
                                apr_size_t len)
{
    const char *s = text, *end = text + len;

    while (s < end) {
        const char *nl = memchr(s, '\n', (apr_size_t)(end - s));
        const char *e = nl ? nl : end, *next = nl ? nl + 1 : end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (s < e && *s != '#')
            return apr_pstrmemdup(p, s, (apr_size_t)(e - s));
        s = next;
    }
    return NULL;
}

/* The secret to sign with: the first of the config's, of a secret file, or
 * of standard input ("-"); NULL and *err otherwise.  *cfg gives the limits
 * (the defaults when there is no config). */
static const char *signing_secret(apr_pool_t *p, const char *config,
                                  const char *secret_file, hf_config_t **cfg,
                                  const char **err)
{
    const char *secret = NULL;

    if (!secret_file) {
        if ((*err = cgi_conffile_read(p, config, cfg, &cgi_serve_stderr_log,
                                      CGI_CONF_MISSING_HANDLERS)))
            return NULL;
        if (!(*cfg)->secrets || (*cfg)->secrets->nelts == 0)
            return *err = apr_psprintf(p, "%s: no secret to sign with",
                                       config), NULL;
        return APR_ARRAY_IDX((*cfg)->secrets, 0, const char *);
    }
    *cfg = hf_config_create(p);
    if (!strcmp(secret_file, "-")) {
        apr_size_t len;
        char *text = read_all_fd(p, STDIN_FILENO, 65536, &len);
        if (text) {
            secret = first_secret(p, text, len);
            memset(text, 0, len);
        }
        if (!secret)
            *err = "no secret on standard input (one line, as in a secret "
                   "file)";
        return secret;
    }
    {
        hf_config_ctx_t ctx = {p, NULL};
        char *argv[] = {(char *)secret_file, NULL};
        if ((*err = hf_config_apply(
                 &ctx, *cfg, hf_config_directive_find("HrflowSecretFile"), 1,
                 argv)))
            return NULL;
    }
    return APR_ARRAY_IDX((*cfg)->secrets, 0, const char *);
}

/* The event's JSON from event_file or standard input; NULL and *err. */
static char *read_event(apr_pool_t *p, const char *event_file,
                        apr_size_t max, apr_size_t *len, const char **err)
{
    int fd = STDIN_FILENO;
    char *json;

    if (event_file
        && (fd = open(event_file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
        return *err = apr_psprintf(p, "cannot read %s: %s", event_file,
                                   strerror(errno)), NULL;
    json = read_all_fd(p, fd, max, len);
    if (event_file)
        close(fd);
    if (!json)
        *err = "the event is larger than HrflowMaxBody";
    return json;
}

static int sign(apr_pool_t *p, const char *config, const char *secret_file,
                const char *event_file)
{
    hf_config_t *cfg;
    apr_array_header_t *events;
    const char *err = NULL, *secret;
    unsigned char mac[32];
    apr_size_t len;
    char *json;

    if (secret_file && !strcmp(secret_file, "-") && !event_file)
        return fputs("--secret-file -: the secret is on standard input, so "
                     "the event must be a file: --sign --secret-file - "
                     "EVENT_FILE\n", stderr), 2;
    if (!(secret = signing_secret(p, config, secret_file, &cfg, &err)))
        return fprintf(stderr, "%s\n", err), 1;
    json = read_event(p, event_file, (apr_size_t)hf_config_max_body(cfg),
                      &len, &err);
    if (!json)
        return fprintf(stderr, "%s\n", err), 1;
    while (len > 0 && apr_isspace(json[len - 1]))
        json[--len] = '\0';
    if (hf_events_from_json(p, json, len, hf_config_max_events(cfg), &events,
                            &err) != HF_OK)
        return fprintf(stderr, "not an event: %s\n", err), 1;
    hf_sha256_hmac(secret, json, len, mac);
    printf("%s.%s\n", hf_codec_base64url_encode(p, mac, sizeof mac),
           hf_codec_base64url_encode(p, (unsigned char *)json, len));
    return 0;
}

/* The value of an option that takes one; NULL if it is missing. */
static const char *option_value(int argc, const char *const *argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

int cgi_tool(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *config = NULL, *secret_file = NULL, *event_file = NULL;
    const char *check_file = NULL;
    int i, do_sign = 0, do_check = 0, flags = 0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return fputs(usage, stdout), 0;
        if (!strcmp(a, "--version"))
            return printf(HRFLOW_CGI_NAME " (mod_hrflow) %s\n",
                          PACKAGE_VERSION), 0;
        if (!strcmp(a, "--check"))
            do_check = 1;
        else if (!strcmp(a, "--allow-missing-handlers"))
            flags |= CGI_CONF_MISSING_HANDLERS;
        else if (!strcmp(a, "--config")
                 && (config = option_value(argc, argv, &i)))
            ;
        else if (!strcmp(a, "--secret-file")
                 && (secret_file = option_value(argc, argv, &i)))
            ;
        else if (!strcmp(a, "--sign"))
            do_sign = 1;
        else if (do_check && a[0] != '-' && !check_file)
            check_file = a;
        else if (do_sign && a[0] != '-' && !event_file)
            event_file = a;
        else
            return fprintf(stderr, "%s: unknown or incomplete option '%s'\n%s",
                           HRFLOW_CGI_NAME, a, usage), 2;
    }
    if (do_check && check_file && !do_sign && !config && !secret_file)
        return check(p, check_file, flags);
    if (!do_sign || do_check || (config && secret_file))
        return fputs(usage, stderr), 2;
    return sign(p, config ? config : cgi_conffile_path(p, argv[0]), secret_file,
                event_file);
}
