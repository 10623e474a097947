/*
 * hf_log.c - the core's log lines go to whatever sink the front end gives:
 * ap_log_rerror in the module, standard error in the CGI.
 */
#include <stdarg.h>
#include <apr_strings.h>
#include "hrflow.h"

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
