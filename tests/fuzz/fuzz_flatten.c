/*
 * fuzz_flatten.c - libFuzzer target: the walk over an object's text
 * (hf_json_flatten_text, hf_json_text_type) against json-c's tree of it
 * (hf_json_flatten, hf_json_get_string), and events from the text alone
 * (hf_events_from_json_text) against events from trees.
 *
 * Invariants: for any input hf_json_parse takes as an object, both walks
 * pass the same leaves (path and value bytes) in the same order and leave
 * out the same count, under a path limit and a stop that vary with the
 * input, unless the text walk says it cannot (the fallback flag); the
 * type read from the text is json-c's, or none where json-c's is no valid
 * type either;
 * for any input, both ways of making events agree on the outcome, the
 * error, and each event's text, type and id.
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "fuzz.h"

typedef struct {
    apr_pool_t *pool;
    apr_array_header_t *leaves;  /* const char *: "path=value" */
    int stop_after;              /* leaves to take; -1: all */
} record_t;

static int record(void *ctx, const char *path, apr_size_t path_len,
                  const char *value, apr_size_t vlen)
{
    record_t *r = ctx;
    char *s = apr_palloc(r->pool, path_len + 1 + vlen + 1);

    FUZZ_CHECK(strlen(path) == path_len);
    memcpy(s, path, path_len);
    s[path_len] = '=';
    memcpy(s + path_len + 1, value, vlen);
    s[path_len + 1 + vlen] = '\0';
    /* a NUL inside the value is kept: compare lengths as well */
    APR_ARRAY_PUSH(r->leaves, const char *) = s;
    APR_ARRAY_PUSH(r->leaves, const char *) =
        apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, vlen);
    return r->stop_after >= 0 && r->leaves->nelts / 2 >= r->stop_after;
}

/* Both walks under max_path and a stop after stop_after leaves (-1: none):
 * the same leaves and the same count left out, or the fallback flag. */
static void same_leaves(apr_pool_t *p, const char *text, apr_size_t len,
                        const hf_json_t *j, apr_size_t max_path,
                        int stop_after)
{
    record_t a = {p, apr_array_make(p, 8, sizeof(const char *)), stop_after};
    record_t b = {p, apr_array_make(p, 8, sizeof(const char *)), stop_after};
    apr_size_t sa, sb;
    int fallback, i;

    sa = hf_json_flatten(p, j, "HRFLOW", max_path, record, &a);
    sb = hf_json_flatten_text(p, text, len, "HRFLOW", max_path, record, &b,
                              &fallback);
    if (fallback) {
        FUZZ_CHECK(sb == 0);
        return;
    }
    FUZZ_CHECK(sa == sb);
    FUZZ_CHECK(a.leaves->nelts == b.leaves->nelts);
    for (i = 0; i < a.leaves->nelts; i++) {
        const char *x = APR_ARRAY_IDX(a.leaves, i, const char *);
        const char *y = APR_ARRAY_IDX(b.leaves, i, const char *);
        /* the NUL-terminated copies: equal up to a NUL, and equal lengths */
        FUZZ_CHECK(strcmp(x, y) == 0);
    }
}

/* Each value's bytes, NULs and what follows them included. */
static int value_bytes(void *ctx, const char *path, apr_size_t path_len,
                       const char *value, apr_size_t vlen)
{
    record_t *r = ctx;

    (void)path;
    (void)path_len;
    APR_ARRAY_PUSH(r->leaves, const char *) = hf_codec_base64url_encode(
        r->pool, (const unsigned char *)value, vlen);
    return 0;
}

static void same_bytes(apr_pool_t *p, const char *text, apr_size_t len,
                       const hf_json_t *j)
{
    record_t a = {p, apr_array_make(p, 8, sizeof(const char *)), -1};
    record_t b = {p, apr_array_make(p, 8, sizeof(const char *)), -1};
    int fallback, i;

    hf_json_flatten(p, j, "HRFLOW", HF_MAX_NAME_BYTES, value_bytes, &a);
    hf_json_flatten_text(p, text, len, "HRFLOW", HF_MAX_NAME_BYTES, value_bytes,
                         &b, &fallback);
    if (fallback)
        return;
    FUZZ_CHECK(a.leaves->nelts == b.leaves->nelts);
    for (i = 0; i < a.leaves->nelts; i++)
        FUZZ_CHECK(strcmp(APR_ARRAY_IDX(a.leaves, i, const char *),
                          APR_ARRAY_IDX(b.leaves, i, const char *)) == 0);
}

static void same_events(apr_pool_t *p, const char *text, apr_size_t len)
{
    apr_array_header_t *ta, *tb;
    const char *ea = NULL, *eb = NULL;
    hf_rc_t ra = hf_events_from_json(p, text, len, 20, &ta, &ea);
    hf_rc_t rb = hf_events_from_json_text(p, text, len, 20, &tb, &eb);
    int i;

    FUZZ_CHECK(ra == rb);
    if (ra != HF_OK) {
        FUZZ_CHECK(ea && eb && strcmp(ea, eb) == 0);
        return;
    }
    FUZZ_CHECK(ta->nelts == tb->nelts);
    for (i = 0; i < ta->nelts; i++) {
        hf_event_t *x = APR_ARRAY_IDX(ta, i, hf_event_t *);
        hf_event_t *y = APR_ARRAY_IDX(tb, i, hf_event_t *);
        FUZZ_CHECK(y->json == NULL);
        FUZZ_CHECK(x->text == y->text && x->len == y->len);
        FUZZ_CHECK(strcmp(x->type, y->type) == 0);
        FUZZ_CHECK(strcmp(x->id, y->id) == 0);
        FUZZ_CHECK(x->index == y->index);
    }
}

/* json-c's text of the tree, written from the text. */
static void same_text(apr_pool_t *p, const char *text, size_t size,
                      hf_json_t *j)
{
    apr_size_t an, bn;
    int fallback;
    const char *a = hf_json_text(p, j, &an);
    const char *b = hf_json_text_canonical(p, text, size, &bn, &fallback);

    FUZZ_CHECK(fallback || (b && an == bn && memcmp(a, b, an) == 0));
}

/* The input as a form body: both routes give the same outcome and text. */
static void same_form(apr_pool_t *p, const char *text, size_t size)
{
    apr_array_header_t *ea, *eb;
    const char *erra = NULL, *errb = NULL;
    hf_rc_t ra = hf_events_from_form(p, text, size, &ea, &erra);
    hf_rc_t rb = hf_events_from_form_text(p, text, size, &eb, &errb);

    FUZZ_CHECK(ra == rb);
    if (ra != HF_OK) {
        FUZZ_CHECK(erra && errb && strcmp(erra, errb) == 0);
        return;
    }
    FUZZ_CHECK(ea->nelts == 1 && eb->nelts == 1);
    {
        const hf_event_t *a = APR_ARRAY_IDX(ea, 0, hf_event_t *);
        const hf_event_t *b = APR_ARRAY_IDX(eb, 0, hf_event_t *);
        FUZZ_CHECK(a->len == b->len && memcmp(a->text, b->text, a->len) == 0);
        FUZZ_CHECK(strcmp(a->type, b->type) == 0);
        FUZZ_CHECK(strcmp(a->id, b->id) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *text, *err, *ta, *tb;
    hf_json_t *j;

    apr_pool_create(&p, fuzz_pool());
    text = apr_pstrmemdup(p, (const char *)data, size);
    same_events(p, text, size);
    same_form(p, text, size);
    j = hf_json_parse(p, text, size, &err);
    if (j)
        same_text(p, text, size, j);
    if (j && hf_json_is_object(j)) {
        /* the whole walk; then paths cut short and a stop, from the size */
        same_leaves(p, text, size, j, HF_MAX_NAME_BYTES, -1);
        same_leaves(p, text, size, j, 6 + size % 24, (int)(size % 5));
        same_leaves(p, text, size, j, 5, -1);  /* shorter than the prefix */
        same_bytes(p, text, size, j);
        ta = hf_json_get_string(j, "type");
        tb = hf_json_text_type(p, text, size);
        FUZZ_CHECK(tb ? ta && strcmp(ta, tb) == 0
                      : !ta || !hf_event_type_valid(ta));
    }
    apr_pool_destroy(p);
    return 0;
}
