/*
 * cgi_main.c - hrflow.cgi: a CGI/1.1 request when httpd runs it, the
 * administrator's helper when run with arguments from a terminal.
 */
#include <signal.h>
#include <stdlib.h>
#include <apr_general.h>
#include "hrflow_cgi.h"

int main(int argc, const char *const *argv)
{
    apr_pool_t *pool;
    int rc;

    /* A client gone before the answer is written must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS
        || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        fputs(HRFLOW_CGI_NAME ": cannot initialize APR\n", stderr);
        return 1;
    }
    /* Under httpd, GATEWAY_INTERFACE is always set, and arguments come from
     * the query string (RFC 3875 4.4, "?--sign"): never obey them there, or
     * any visitor could have events signed. */
    if (getenv("GATEWAY_INTERFACE"))
        rc = cgi_serve(pool, argv[0]);
    else
        rc = cgi_tool(pool, argc, argv);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
