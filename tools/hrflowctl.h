/*
 * hrflowctl.h - what hrflowctl's two halves share: the spool commands
 * (hrflowctl.c) and the queue's (hrflowctl_queue.c, fleet mode only).
 */
#ifndef HRFLOWCTL_H
#define HRFLOWCTL_H

#include "hrflow.h"

typedef struct {
    const char *name;            /* --name: HrflowQueueName, or NULL */
    const char *password_file;   /* --password-file, or NULL */
} hrflowctl_opts_t;

/* Whether a command's argument is a queue's URL rather than a folder. */
int hrflowctl_is_url(const char *arg);

/* Runs cmd (init, list, show, requeue) on the queue at url; the exit
 * status, 2 for a usage error. */
int hrflowctl_queue(apr_pool_t *p, const hrflowctl_opts_t *o,
                    const char *cmd, const char *url, int argc,
                    const char *const *args);

#endif
