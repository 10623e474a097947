/*
 * fuzz_receive.c - libFuzzer target for everything a request's bytes reach
 * before a handler runs: content-type dispatch, form and JSON parsing, event
 * and type validation, base64/hex, every signature variant, routing,
 * flattening into variables, the spool file an event is kept in, and the
 * response body.
 *
 * Input layout: byte 0 picks the content type (bits 0-1), whether the rest
 * begins with a signature header value up to the first '\n' (bit 2), and
 * the endpoint's configuration (bits 3-4); the rest is the body.
 *
 * Invariants checked on every accepted event: its type has no NUL in it,
 * its text is RFC 8259 JSON
 * and parses by itself to the same JSON as the event (a batch element's
 * span is the element, never a fragment), and the spool file written for
 * it parses back to the same bytes (what is accepted can be run).
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "fuzz.h"
#include "rfc8259.h"

#define SECRET "fuzz-secret"
#define CUSTOM_HEADER "X-Hook-Signature"

static hf_config_t *configs[4];
static const char *signature;
static const char *signature_header;

static const char *header(void *ctx, const char *name)
{
    (void)ctx;
    return strcasecmp(name, signature_header) == 0 ? signature : NULL;
}

static void apply(apr_pool_t *p, hf_config_t *cfg, const char *name,
                  const char *a, const char *b)
{
    hf_config_ctx_t ctx = {p, NULL};
    char *argv[] = {(char *)a, (char *)b, NULL};

    FUZZ_CHECK(hf_config_apply(&ctx, cfg, hf_config_directive_find(name),
                               b ? 2 : 1, argv)
               == NULL);
}

/* 0: optional, two secrets; 1: required; 2: off; 3: optional with small
 * limits and its own signature header. */
static void setup(void)
{
    static const char *const modes[] = {"optional", "required", "off",
                                        "optional"};
    apr_pool_t *p = fuzz_pool();
    int i;

    for (i = 0; i < 4; i++) {
        hf_config_t *cfg = configs[i] = hf_config_create(p);
        apply(p, cfg, "HrflowSecret", SECRET, NULL);
        apply(p, cfg, "HrflowSecret", "rotated-secret", NULL);
        apply(p, cfg, "HrflowSignature", modes[i], NULL);
        apply(p, cfg, "HrflowHandler", "profile.parsing.success", "/bin/true");
        apply(p, cfg, "HrflowHandler", "*.error", "/bin/true");
        FUZZ_CHECK(hf_config_check_endpoint(p, cfg) == NULL);
    }
    apply(p, configs[3], "HrflowMaxEvents", "3", NULL);
    apply(p, configs[3], "HrflowMaxBody", "4096", NULL);
    apply(p, configs[3], "HrflowSignatureHeader", CUSTOM_HEADER, NULL);
}

/* The event's own text is a JSON object equal to the event. */
static void check_text(apr_pool_t *p, const hf_event_t *ev)
{
    const char *err, *a, *b;
    apr_size_t alen, blen;
    hf_json_t *again = hf_json_parse(p, ev->text, ev->len, &err);

    FUZZ_CHECK(rfc_json_text(ev->text, ev->len) != 0);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(hf_json_is_object(again));
    a = hf_json_text(p, ev->json, &alen);
    b = hf_json_text(p, again, &blen);
    FUZZ_CHECK(alen == blen && memcmp(a, b, alen) == 0);
}

/* The spool file of the event reads back to the same event bytes. */
static void check_spool_file(apr_pool_t *p, const hf_event_t *ev,
                             const hf_batch_t *batch)
{
    static const char *const argv[] = {"/bin/true", "an arg", NULL};
    hf_envelope_t e = {0}, back;
    const char *err;
    apr_size_t len;
    char *text;

    e.order_key = hf_spool_order_key(p, ev);
    e.name = hf_spool_event_name(p, 1795371791298842, ev->index,
                                 ev->delivery_id, e.order_key);
    FUZZ_CHECK(hf_spool_is_event_name(e.name));
    FUZZ_CHECK((hf_spool_name_key(p, e.name) != NULL) == (e.order_key != NULL));
    e.delivery_id = ev->delivery_id;
    e.event_id = ev->id;
    e.type = ev->type;
    e.received = 1795371791298842;
    e.index = ev->index;
    e.count = batch->count;
    e.verified = batch->verified;
    e.timeout = 30;
    e.argv = argv;
    e.text = ev->text;
    e.len = ev->len;
    text = hf_spool_envelope_encode(p, &e, &len);
    err = hf_spool_envelope_parse(p, text, len, &back);
    if (err)
        fprintf(stderr, "spool file does not read back: %s\n", err);
    FUZZ_CHECK(err == NULL);
    FUZZ_CHECK(back.len == ev->len && memcmp(back.text, ev->text, ev->len) == 0);
    FUZZ_CHECK(strcmp(back.type, ev->type) == 0);
}

static void check_events(apr_pool_t *p, const hf_config_t *cfg,
                         const hf_outcome_t *out)
{
    hf_batch_t batch = {out->events->nelts, out->verified, 1};
    apr_size_t n;
    int i, dropped;

    FUZZ_CHECK(out->events->nelts > 0);
    FUZZ_CHECK(out->events->nelts <= hf_config_max_events(cfg));
    for (i = 0; i < out->events->nelts; i++) {
        hf_event_t *ev = APR_ARRAY_IDX(out->events, i, hf_event_t *);
        FUZZ_CHECK(ev->index == i);
        FUZZ_CHECK(hf_event_type_valid(ev->type));
        /* The type as JSON holds no more than the C string shows. */
        FUZZ_CHECK(strcmp(hf_json_text(p, hf_json_get(ev->json, "type"), &n),
                          hf_json_quote(p, ev->type)) == 0);
        check_text(p, ev);
        hf_route(cfg->handlers, ev->type);
        ev->vars = hf_env_build(p, ev, &batch, &dropped);
        hf_env_block(p, ev->vars);
        check_spool_file(p, ev, &batch);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *types[] = {
        "application/json", "application/x-www-form-urlencoded",
        "application/json; charset=utf-8", "text/plain"};
    apr_pool_t *p;
    hf_request_t req = {0};
    hf_outcome_t out;
    const hf_config_t *cfg;
    const char *rest;
    apr_size_t len;

    if (!configs[0])
        setup();
    if (size < 1)
        return 0;
    apr_pool_create(&p, fuzz_pool());
    cfg = configs[(data[0] >> 3) & 3];
    signature_header = cfg->signature_header ? cfg->signature_header
                                             : "HTTP-HRFLOW-SIGNATURE";
    rest = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    len = size - 1;
    signature = NULL;
    if (data[0] & 4) {
        const char *nl = memchr(rest, '\n', len);
        if (nl) {
            signature = apr_pstrmemdup(p, rest, (apr_size_t)(nl - rest));
            len -= (apr_size_t)(nl + 1 - rest);
            rest = nl + 1;
        }
    }
    req.method = "POST";
    req.content_type = types[data[0] & 3];
    req.body = rest;
    req.body_len = len;
    req.header = header;
    hf_receive(p, cfg, &req, &out);
    if (out.rc == HF_OK)
        check_events(p, cfg, &out);
    else
        FUZZ_CHECK(out.error != NULL);
    hf_receive_response_body(p, &out);
    apr_pool_destroy(p);
    return 0;
}
