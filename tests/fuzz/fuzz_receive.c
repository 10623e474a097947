/*
 * fuzz_receive.c - libFuzzer target for everything a request's bytes reach
 * before a handler runs: content-type dispatch, form and JSON parsing, event
 * and type validation, base64/hex, every signature variant, flattening into
 * variables and the response body.
 *
 * Input layout: byte 0 picks the content type and whether the rest begins
 * with a signature header value (up to the first '\n'); the rest is the body.
 */
#include <stdint.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "hrflow.h"

static apr_pool_t *root;
static hf_config_t *cfg;
static const char *signature;

static const char *header(void *ctx, const char *name)
{
    (void)ctx;
    return strcasecmp(name, "HTTP-HRFLOW-SIGNATURE") == 0 ? signature : NULL;
}

static void setup(void)
{
    hf_config_ctx_t ctx;
    char *secret[] = {"fuzz-secret", NULL};
    char *optional[] = {"optional", NULL};

    apr_initialize();
    apr_pool_create(&root, NULL);
    ctx.pool = root;
    ctx.base_dir = NULL;
    cfg = hf_config_create(root);
    hf_config_apply(&ctx, cfg, hf_directive_find("HrflowSecret"), 1, secret);
    hf_config_apply(&ctx, cfg, hf_directive_find("HrflowSignature"), 1,
                    optional);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *types[] = {
        "application/json", "application/x-www-form-urlencoded",
        "application/json; charset=utf-8", NULL};
    apr_pool_t *p;
    hf_request_t req = {0};
    hf_outcome_t out;
    const char *rest;
    apr_size_t len;
    int i;

    if (!root)
        setup();
    if (size < 1)
        return 0;
    apr_pool_create(&p, root);
    rest = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    len = size - 1;
    signature = NULL;
    if (data[0] & 4) {
        const char *nl = memchr(rest, '\n', len);
        if (nl) {
            signature = apr_pstrmemdup(p, rest, nl - rest);
            len -= nl + 1 - rest;
            rest = nl + 1;
        }
    }
    req.method = "POST";
    req.content_type = types[data[0] & 3];
    req.body = rest;
    req.body_len = len;
    req.header = header;
    hf_receive(p, cfg, &req, &out);
    if (out.rc == HF_OK) {
        hf_batch_t batch = {out.events->nelts, out.verified, 1};
        for (i = 0; i < out.events->nelts; i++) {
            hf_event_t *ev = APR_ARRAY_IDX(out.events, i, hf_event_t *);
            int dropped;
            ev->vars = hf_env_build(p, ev, &batch, &dropped);
            hf_env_block(p, ev->vars);
        }
    }
    hf_response_body(p, &out);
    apr_pool_destroy(p);
    return 0;
}
