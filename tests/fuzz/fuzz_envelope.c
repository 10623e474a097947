/*
 * fuzz_envelope.c - libFuzzer target for what the dispatcher and hrflowctl
 * read from the spool, a folder the Apache user can write: event files
 * (hf_spool_envelope_parse) and file names (hf_spool_is_event_name,
 * hf_spool_name_key).  The whole input is a file's text, and, up to its
 * first NUL, a file name.
 *
 * Invariants: a file that parses has a handler, a type and a delivery id,
 * and its event text lies inside the file; written again (as a retry
 * does), it reads back the same.
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"
#include "fuzz.h"

static int same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_parsed(apr_pool_t *p, const char *text, apr_size_t len,
                         const hf_envelope_t *e)
{
    hf_envelope_t back;
    apr_size_t n;
    char *again;
    int i;

    FUZZ_CHECK(e->argv && e->argv[0] && e->delivery_id && e->type);
    FUZZ_CHECK(e->count >= 1 && e->timeout >= 1);
    FUZZ_CHECK(e->text >= text && e->text + e->len <= text + len);
    again = hf_spool_envelope_encode(p, e, &n);
    FUZZ_CHECK(hf_spool_envelope_parse(p, again, n, &back) == NULL);
    FUZZ_CHECK(back.len == e->len && memcmp(back.text, e->text, e->len) == 0);
    FUZZ_CHECK(same(back.delivery_id, e->delivery_id));
    FUZZ_CHECK(same(back.event_id, e->event_id));
    FUZZ_CHECK(same(back.type, e->type));
    FUZZ_CHECK(same(back.order_key, e->order_key));
    FUZZ_CHECK(same(back.last_result, e->last_result));
    FUZZ_CHECK(back.attempt == e->attempt && back.index == e->index);
    for (i = 0; e->argv[i]; i++)
        FUZZ_CHECK(same(back.argv[i], e->argv[i]));
    FUZZ_CHECK(back.argv[i] == NULL);
}

static void check_name(apr_pool_t *p, const char *name)
{
    const char *key;

    if (!hf_spool_is_event_name(name))
        return;
    key = hf_spool_name_key(p, name);
    FUZZ_CHECK(!key || strlen(key) < strlen(name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *text;
    hf_envelope_t e;

    apr_pool_create(&p, fuzz_pool());
    /* As hf_spool_read_file leaves it: a NUL after the last byte. */
    text = apr_pstrmemdup(p, (const char *)data, size);
    if (hf_spool_envelope_parse(p, text, size, &e) == NULL)
        check_parsed(p, text, size, &e);
    check_name(p, text);
    apr_pool_destroy(p);
    return 0;
}
