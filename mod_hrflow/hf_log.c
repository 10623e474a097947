/*
 * hf_log.c - the core's log lines go to whatever sink the front end gives:
 * ap_log_rerror in the module, standard error in the CGI.
 */
#include <stdarg.h>
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "config.h"

/* From configure.ac's AC_INIT, here because httpd's headers define their
 * own PACKAGE_VERSION. */
const char hf_version[] = PACKAGE_VERSION;

void hf_log(const hf_logger_t *log, int level, apr_pool_t *p,
            const char *fmt, ...)
{
    va_list ap;

    if (!log || !log->write || (log->wants && !log->wants(log->ctx, level)))
        return;
    va_start(ap, fmt);
    log->write(log->ctx, level, apr_pvsprintf(p, fmt, ap));
    va_end(ap);
}

int hf_log_escape_byte(unsigned char c, int keep_lines, char *out)
{
    static const char hex[] = "0123456789abcdef";

    if ((c >= 0x20 && c != 0x7f) || (keep_lines && (c == '\n' || c == '\t'))) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 0xf];
    return HF_ESCAPED_MAX;
}

char *hf_log_escape(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) * HF_ESCAPED_MAX + 1), *o = out;

    for (; *s; s++)
        o += hf_log_escape_byte((unsigned char)*s, 0, o);
    *o = '\0';
    return out;
}
