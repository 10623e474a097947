/*
 * cgi_tool.c - hrflow.cgi run from a terminal: check a config file as
 * `apachectl configtest` would, and sign a test event so that curl can send
 * it to either front end.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow_cgi.h"
#include "config.h"

static const char usage[] =
    "usage: " HRFLOW_CGI_NAME " --check FILE\n"
    "       " HRFLOW_CGI_NAME " --sign [--config FILE] < event.json\n"
    "       " HRFLOW_CGI_NAME " --help | --version\n"
    "\n"
    "Run by a web server (CGI/1.1), receives HrFlow.ai webhook events: it\n"
    "verifies their signature and runs the handler mapped to each type.\n"
    "Its configuration is $" HRFLOW_CONFIG_ENV ", else " HRFLOW_CONFIG_FILE
    " beside the program.\n"
    "\n"
    "  --check FILE   validate a config file (exit 0: usable)\n"
    "  --sign         print an HTTP-HRFLOW-SIGNATURE value for the event JSON\n"
    "                 on standard input, with the config's first secret:\n"
    "                   curl -H \"HTTP-HRFLOW-SIGNATURE: $(" HRFLOW_CGI_NAME
    " --sign < ev.json)\" \\\n"
    "                        -X POST https://example.com/cgi-bin/"
    HRFLOW_CGI_NAME "\n"
    "  --config FILE  the config to use instead of the default\n";

static int check(apr_pool_t *p, const char *path)
{
    hf_config_t *cfg;
    const char *err = cgi_config_read(p, path, &cfg, &cgi_stderr_log);

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

/* Reads all of standard input, up to max bytes; NULL past it. */
static char *read_stdin(apr_pool_t *p, apr_size_t max, apr_size_t *len)
{
    char *buf = apr_palloc(p, max + 1);
    ssize_t n;

    *len = 0;
    while ((n = read(STDIN_FILENO, buf + *len, max + 1 - *len)) > 0)
        if ((*len += (apr_size_t)n) > max)
            return NULL;
    buf[*len] = '\0';
    return buf;
}

static int sign(apr_pool_t *p, const char *path)
{
    hf_config_t *cfg;
    apr_array_header_t *events;
    const char *err = cgi_config_read(p, path, &cfg, &cgi_stderr_log);
    unsigned char mac[32];
    apr_size_t len;
    char *json, *payload;

    if (err)
        return fprintf(stderr, "%s\n", err), 1;
    if (!cfg->secrets || cfg->secrets->nelts == 0)
        return fprintf(stderr, "%s: no secret to sign with\n", path), 1;
    json = read_stdin(p, (apr_size_t)hf_config_max_body(cfg), &len);
    if (!json)
        return fprintf(stderr, "the event is larger than HrflowMaxBody\n"), 1;
    while (len > 0 && apr_isspace(json[len - 1]))
        json[--len] = '\0';
    if (hf_events_from_json(p, json, len, hf_config_max_events(cfg), &events,
                            &err) != HF_OK)
        return fprintf(stderr, "not an event: %s\n", err), 1;
    payload = hf_base64url_encode(p, (unsigned char *)json, len);
    hf_hmac_sha256(APR_ARRAY_IDX(cfg->secrets, 0, const char *), json, len,
                   mac);
    printf("%s.%s\n", hf_base64url_encode(p, mac, sizeof mac), payload);
    return 0;
}

int cgi_tool(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *config = NULL;
    int i, do_sign = 0;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return fputs(usage, stdout), 0;
        if (!strcmp(argv[i], "--version"))
            return printf(HRFLOW_CGI_NAME " (mod_hrflow) %s\n",
                          PACKAGE_VERSION), 0;
        if (!strcmp(argv[i], "--check") && i + 1 < argc)
            return check(p, argv[i + 1]);
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "--sign"))
            do_sign = 1;
        else
            return fprintf(stderr, "%s: unknown or incomplete option '%s'\n%s",
                           HRFLOW_CGI_NAME, argv[i], usage), 2;
    }
    if (!do_sign)
        return fputs(usage, stderr), 2;
    return sign(p, config ? config : cgi_config_path(p, argv[0]));
}
