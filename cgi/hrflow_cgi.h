/*
 * hrflow_cgi.h - the CGI front end of the receiver (SPEC section 7).
 *
 * The CGI reads the module's directives from a file (cgi_conffile.c),
 * serves one CGI/1.1 request with the core (cgi_serve.c), or, run from a
 * terminal, checks a config and signs test events (cgi_tool.c).
 */
#ifndef HRFLOW_CGI_H
#define HRFLOW_CGI_H

#include <stdio.h>
#include "hrflow.h"

#define HRFLOW_CGI_NAME "hrflow.cgi"
#define HRFLOW_CONFIG_ENV "HRFLOW_CONFIG"
#define HRFLOW_CONFIG_FILE "hrflow.conf"

/* Log lines go to standard error, which httpd writes to its error log. */
extern const hf_logger_t cgi_serve_stderr_log;

/* The config file this program uses: $HRFLOW_CONFIG, else hrflow.conf in
 * the directory of the program (argv0, or SCRIPT_FILENAME under httpd). */
const char *cgi_conffile_path(apr_pool_t *p, const char *argv0);

/* Reads a config file of module directives into *cfg.  NULL, or a message
 * naming the file, the line and the reason.  Warnings go to log.  flags:
 * CGI_CONF_MISSING_HANDLERS leaves out, with a warning, each HrflowHandler
 * whose program does not exist (checking or signing on a machine where the
 * handlers are not); never when serving. */
#define CGI_CONF_MISSING_HANDLERS 1
/* CGI_CONF_WORKER: the file is hrflow-worker's: the queue's and the
 * scheduler's directives (server-wide in the module) and HrflowHandler
 * are what it takes, and nothing of an endpoint is checked. */
#define CGI_CONF_WORKER 2
const char *cgi_conffile_read(apr_pool_t *p, const char *path,
                              hf_config_t **cfg, const hf_logger_t *log,
                              int flags);

/* Parses the text of a config file (named path in messages; relative paths
 * taken from base_dir) into *cfg, as cgi_conffile_read does once the file is
 * read.  *inline_secret: whether it holds an HrflowSecret line. */
const char *cgi_conffile_parse(apr_pool_t *p, const char *path,
                               const char *text, apr_size_t len,
                               const char *base_dir, hf_config_t **cfg,
                               int *inline_secret);

/* Whether a file may be trusted (cgi_trust.c): NULL, or the rule it
 * breaks, as "it is writable by others (mode 0666)" or "its folder /x is
 * owned by uid 1001, not ...".  _folder: the folder that holds path.
 * _open: the file open as fd (its stat in *st) and its folder.  _path: a
 * file by name, symbolic links followed (the name's folder, the file and
 * its real folder); NULL also when there is no such file. */
struct stat;
const char *cgi_trust_folder(apr_pool_t *p, const char *path);
const char *cgi_trust_open(apr_pool_t *p, const char *path, int fd,
                           struct stat *st);
const char *cgi_trust_path(apr_pool_t *p, const char *path);

/* Serves the CGI/1.1 request described by the environment; exit status. */
int cgi_serve(apr_pool_t *p, const char *argv0);

/* Terminal mode: --check, --sign, --help, --version; exit status. */
int cgi_tool(apr_pool_t *p, int argc, const char *const *argv);

#endif
