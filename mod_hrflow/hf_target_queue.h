/*
 * hf_target_queue.h - store-and-forward's target (hf_target_queue.c):
 * the dispatcher forwards each spooled event into the shared queue.
 */
#ifndef HF_TARGET_QUEUE_H
#define HF_TARGET_QUEUE_H

#include "hf_sched.h"
#include "hf_queue.h"

typedef struct hf_target_queue_t hf_target_queue_t;
/* The target's context for a scheduler of concurrency worker threads,
 * forwarding to the queue spec names (spec->app: "hrflow-forwarder").
 * Made in the main thread, before the scheduler starts. */
hf_target_queue_t *hf_target_queue_create(apr_pool_t *p,
                                          const hf_queue_spec_t *spec,
                                          int concurrency);
extern const hf_target_t hf_target_queue;

#endif
