/*
 * mod_hrflow.h - what the files of the Apache module share.
 */
#ifndef MOD_HRFLOW_H
#define MOD_HRFLOW_H

#include <httpd.h>
#include <http_config.h>
#include "hrflow.h"

extern module AP_MODULE_DECLARE_DATA hrflow_module;

/* The server's durable-mode settings (HrflowSpool and friends). */
const hf_config_t *hrflow_server_config(const server_rec *s);

/* mod_hrflow_spool.c: durable mode's share of the module. */
void hrflow_spool_register_hooks(apr_pool_t *p);
/* The group committer of this process for a spool, or NULL. */
hf_committer_t *hrflow_spool_committer(const char *dir);
/* Whether a spool's directory can be made, for configtest. */
const char *hrflow_spool_check(apr_pool_t *p, const char *dir);

#endif
