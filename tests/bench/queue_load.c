/*
 * queue_load.c - puts events straight into a queue (no receiver), for the
 * worker's benchmarks: queue_load URL COUNT KEYS PROGRAM [NAME].
 *
 * COUNT events of type profile.parsing.success, spread over KEYS order keys
 * (0: none), each with handler PROGRAM, committed 100 to a statement as a
 * receiver's commit group would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "hf_queue.h"

#define GROUP 100

int main(int argc, const char *const *argv)
{
    hf_queue_spec_t spec = {NULL, NULL, HF_DEFAULT_QUEUE_NAME, 30000,
                            "queue_load"};
    const hf_envelope_t *group[GROUP];
    const char *handler[2] = {NULL, NULL}, *err;
    apr_pool_t *p, *pass;
    hf_queue_t *q;
    long count, keys, i;
    int n = 0;

    if (argc < 5)
        return fputs("usage: queue_load URL COUNT KEYS PROGRAM [NAME]\n",
                     stderr), 2;
    apr_app_initialize(&argc, &argv, NULL);
    apr_pool_create(&p, NULL);
    apr_pool_create(&pass, p);
    spec.url = argv[1];
    count = atol(argv[2]);
    keys = atol(argv[3]);
    handler[0] = argv[4];
    if (argc > 5)
        spec.name = argv[5];
    if ((err = hf_queue_open(p, &spec, &q)))
        return fprintf(stderr, "queue_load: %s\n", err), 1;
    for (i = 0; i < count; i++) {
        hf_envelope_t *e = apr_pcalloc(pass, sizeof *e);
        const char *key = keys ? apr_psprintf(pass, "k%ld", i % keys) : NULL;
        e->delivery_id = apr_psprintf(pass, "%032lx", i);
        e->event_id = e->delivery_id;
        e->type = "profile.parsing.success";
        e->order_key = key ? apr_pstrcat(pass, "profile:", key, NULL) : NULL;
        e->received = apr_time_now();
        e->count = 1;
        e->timeout = 30;
        e->argv = handler;
        e->text = key ? apr_psprintf(pass, "{\"type\":\"profile.parsing."
                                     "success\",\"profile\":{\"key\":\"%s\"}}",
                                     key)
                      : "{\"type\":\"profile.parsing.success\"}";
        e->len = strlen(e->text);
        group[n++] = e;
        if (n == GROUP || i == count - 1) {
            if ((err = hf_queue_accept(pass, q, group, n)))
                return fprintf(stderr, "queue_load: %s\n", err), 1;
            n = 0;
            apr_pool_clear(pass);
        }
    }
    hf_queue_close(q);
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
