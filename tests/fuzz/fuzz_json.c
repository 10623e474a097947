/*
 * fuzz_json.c - libFuzzer target for the JSON wrapper and events from JSON:
 * hf_json_parse, hf_json_array_spans, hf_json_walk, hf_json_quote and
 * hf_events_from_json, called directly on the input.
 *
 * Invariants: what hf_json_parse accepts is JSON as RFC 8259 defines it
 * (checked against the grammar in rfc8259.h); hf_json_array_spans ends on any
 * input, and on an array finds each element's own text; an event's type has
 * no NUL in it; a quoted string parses back to itself.
 */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "fuzz.h"
#include "rfc8259.h"

/* ---- the checks ------------------------------------------------------- */

static int same_json(apr_pool_t *p, const hf_json_t *a, const hf_json_t *b)
{
    apr_size_t alen, blen;
    const char *at = hf_json_text(p, a, &alen);
    const char *bt = hf_json_text(p, b, &blen);

    return alen == blen && memcmp(at, bt, alen) == 0;
}

/* text as the only element of an array: scalars parse there too. */
static hf_json_t *parse_in_array(apr_pool_t *p, const char *text,
                                 apr_size_t len)
{
    const char *err;
    char *s = apr_pstrcat(p, "[", apr_pstrmemdup(p, text, len), "]", NULL);

    return hf_json_parse(p, s, len + 2, &err);
}

/* Each element's span is that element's own text. */
static void check_spans(apr_pool_t *p, const char *text, apr_size_t len,
                        const hf_json_t *arr)
{
    apr_array_header_t *starts = apr_array_make(p, 4, sizeof(apr_size_t));
    apr_array_header_t *lens = apr_array_make(p, 4, sizeof(apr_size_t));
    apr_size_t i;

    FUZZ_CHECK(!hf_json_array_spans(text, len, starts, lens));
    FUZZ_CHECK((apr_size_t)starts->nelts == hf_json_array_length(arr));
    for (i = 0; i < hf_json_array_length(arr); i++) {
        apr_size_t at = APR_ARRAY_IDX(starts, i, apr_size_t);
        apr_size_t n = APR_ARRAY_IDX(lens, i, apr_size_t);
        apr_size_t elen;
        const char *el = hf_json_text(p, hf_json_array_get(arr, i), &elen);
        hf_json_t *span, *expected;

        FUZZ_CHECK(at + n <= len);
        span = parse_in_array(p, text + at, n);
        expected = parse_in_array(p, el, elen);
        FUZZ_CHECK(span != NULL && expected != NULL);
        FUZZ_CHECK(same_json(p, span, expected));
    }
}

typedef struct {
    apr_size_t leaves;
} walk_ctx_t;

static void leaf(void *ctx, const char *path, const char *value,
                 apr_size_t vlen)
{
    walk_ctx_t *w = ctx;

    FUZZ_CHECK(strncmp(path, "HRFLOW_", 7) == 0);
    FUZZ_CHECK(value[vlen] == '\0');
    w->leaves++;
}

static void check_events(apr_pool_t *p, const char *text, apr_size_t len)
{
    apr_array_header_t *events;
    const char *err;
    int i;

    if (hf_events_from_json(p, text, len, 100, &events, &err) != HF_OK) {
        FUZZ_CHECK(err != NULL);
        return;
    }
    for (i = 0; i < events->nelts; i++) {
        hf_event_t *ev = APR_ARRAY_IDX(events, i, hf_event_t *);
        apr_size_t n;
        const char *quoted, *why;
        hf_json_t *again = hf_json_parse(p, ev->text, ev->len, &why);

        FUZZ_CHECK(again && same_json(p, again, ev->json));
        FUZZ_CHECK(hf_event_type_valid(ev->type));
        /* The type as JSON holds no more than the C string shows. */
        quoted = hf_json_text(p, hf_json_get(ev->json, "type"), &n);
        FUZZ_CHECK(strcmp(quoted, hf_json_quote(p, ev->type)) == 0);
    }
}

/* Whether s is UTF-8: no overlong form, no surrogate, nothing past
 * U+10FFFF. */
static int is_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned long cp, min;
    int n, k;

    while (*u) {
        if (*u < 0x80) {
            u++;
            continue;
        }
        if (*u >= 0xC2 && *u <= 0xDF)
            n = 2, cp = *u & 0x1Fu, min = 0x80;
        else if ((*u & 0xF0) == 0xE0)
            n = 3, cp = *u & 0x0Fu, min = 0x800;
        else if (*u >= 0xF0 && *u <= 0xF4)
            n = 4, cp = *u & 0x07u, min = 0x10000;
        else
            return 0;
        for (k = 1; k < n; k++) {
            if ((u[k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (u[k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        u += n;
    }
    return 1;
}

/* A UTF-8 string quoted as JSON parses back to the same string.  (What a
 * string that is not UTF-8 becomes is the caller's concern: JSON text is
 * UTF-8, RFC 8259 section 8.1.) */
static void check_quote(apr_pool_t *p, const char *s)
{
    const char *q = hf_json_quote(p, s), *err;
    hf_json_t *j;

    if (!is_utf8(s))
        return;
    j = hf_json_parse(p, q, strlen(q), &err);
    FUZZ_CHECK(j != NULL);
    FUZZ_CHECK(hf_json_as_string(j) && strcmp(hf_json_as_string(j), s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *text, *err;
    apr_array_header_t *starts, *lens;
    hf_json_t *j;
    walk_ctx_t w = {0};

    apr_pool_create(&p, fuzz_pool());
    text = apr_pstrmemdup(p, (const char *)data, size);
    /* Whatever the input, the span finder ends. */
    starts = apr_array_make(p, 4, sizeof(apr_size_t));
    lens = apr_array_make(p, 4, sizeof(apr_size_t));
    hf_json_array_spans(text, size, starts, lens);
    j = hf_json_parse(p, text, size, &err);
    if (j) {
        FUZZ_CHECK(rfc_json_text(text, size) != 0);
        if (hf_json_is_array(j))
            check_spans(p, text, size, j);
        hf_json_walk(p, j, "HRFLOW", leaf, &w);
    } else {
        FUZZ_CHECK(err != NULL);
    }
    check_events(p, text, size);
    check_quote(p, text);
    apr_pool_destroy(p);
    return 0;
}
