/*
 * hf_store_queue.h - the PostgreSQL queue as the scheduler's store
 * (hf_store_queue.c), for hf_worker.c.
 */
#ifndef HF_STORE_QUEUE_H
#define HF_STORE_QUEUE_H

#include "hf_queue.h"
#include "hf_sched.h"

typedef struct hf_store_queue_t hf_store_queue_t;
extern const hf_store_t hf_store_queue;

/* A store for the worker described by spec (kept, with its strings), from
 * p: it claims events of spec->handlers' programs and runs each with its
 * own argv for that program. */
hf_store_queue_t *hf_store_queue_create(apr_pool_t *p,
                                        const hf_worker_spec_t *spec);
/* "host:pid": who holds a claim. */
const char *hf_store_queue_label(const hf_store_queue_t *st);
/* How many distinct programs it claims for. */
int hf_store_queue_programs(const hf_store_queue_t *st);

#endif
