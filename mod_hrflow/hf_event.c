/*
 * hf_event.c - request bodies into events (SPEC section 1).
 *
 * An event is a JSON object with a valid "type".  Its id is the SHA-256 of its
 * JSON exactly as received, so a batch element is hashed from its own span of
 * the body, not from a re-serialization that could differ in spacing.
 */
#include <string.h>
#include <apr_strings.h>
#include <apr_general.h>
#include <apr_lib.h>
#include <apr_hash.h>
#include "hrflow.h"

hf_body_kind_t hf_event_body_kind(const char *ct)
{
    apr_size_t n;

    if (!ct)
        return HF_BODY_OTHER;
    while (*ct == ' ')
        ct++;
    n = strcspn(ct, "; \t");
    if (n == 16 && !strncasecmp(ct, "application/json", n))
        return HF_BODY_JSON;
    if (n == 33 && !strncasecmp(ct, "application/x-www-form-urlencoded", n))
        return HF_BODY_FORM;
    return HF_BODY_OTHER;
}

/* OBJECT.ACTION.STATUS: three non-empty runs of [a-z_] joined by dots, at
 * most HF_MAX_TYPE_BYTES in all (its parts become variables). */
int hf_event_type_valid(const char *type)
{
    int parts = 1, run = 0;
    const char *c;

    if (!type || strnlen(type, HF_MAX_TYPE_BYTES + 1) > HF_MAX_TYPE_BYTES)
        return 0;
    for (c = type; *c; c++) {
        if (*c == '.') {
            if (run == 0)
                return 0;
            parts++;
            run = 0;
        } else if ((*c >= 'a' && *c <= 'z') || *c == '_') {
            run++;
        } else {
            return 0;
        }
    }
    return parts == 3 && run > 0;
}

static void delivery_id(char out[33])
{
    unsigned char raw[16];

    if (apr_generate_random_bytes(raw, sizeof raw) != APR_SUCCESS) {
        /* Unique is what matters; fall back on time and address. */
        apr_time_t now = apr_time_now();
        memset(raw, 0, sizeof raw);
        memcpy(raw, &now, sizeof now);
        memcpy(raw + 8, &out, sizeof(void *) < 8 ? sizeof(void *) : 8);
    }
    hf_codec_hex_encode(raw, sizeof raw, out);
}

static hf_event_t *event_new(apr_pool_t *p, hf_json_t *obj, const char *type,
                             const char *text, apr_size_t len, int index)
{
    unsigned char digest[32];
    hf_event_t *ev = apr_pcalloc(p, sizeof *ev);

    ev->json = obj;
    ev->text = text;
    ev->len = len;
    ev->type = type;
    ev->index = index;
    hf_sha256(text, len, digest);
    hf_codec_hex_encode(digest, sizeof digest, ev->id);
    delivery_id(ev->delivery_id);
    return ev;
}

/* Makes an event from one object and its text; NULL and *err if invalid. */
static hf_event_t *event_make(apr_pool_t *p, hf_json_t *obj, const char *text,
                              apr_size_t len, int index, const char **err)
{
    if (!hf_json_is_object(obj)) {
        *err = "invalid_event";
        return NULL;
    }
    if (!hf_event_type_valid(hf_json_get_string(obj, "type"))) {
        *err = "invalid_type";
        return NULL;
    }
    return event_new(p, obj, hf_json_get_string(obj, "type"), text, len,
                     index);
}

static hf_rc_t events_from_array(apr_pool_t *p, hf_json_t *arr,
                                 const char *text, apr_size_t len,
                                 int max_events, apr_array_header_t *events,
                                 const char **err)
{
    apr_size_t n = hf_json_array_length(arr), i;
    apr_array_header_t *starts, *lens;

    if (n == 0) {
        *err = "empty_batch";
        return HF_E_MALFORMED;
    }
    if (n > (apr_size_t)max_events) {
        *err = "too_many_events";
        return HF_E_TOO_LARGE;
    }
    starts = apr_array_make(p, (int)n, sizeof(apr_size_t));
    lens = apr_array_make(p, (int)n, sizeof(apr_size_t));
    if (hf_json_array_spans(text, len, starts, lens)
        || (apr_size_t)starts->nelts != n) {
        *err = "invalid_json";
        return HF_E_MALFORMED;
    }
    for (i = 0; i < n; i++) {
        apr_size_t at = APR_ARRAY_IDX(starts, i, apr_size_t);
        hf_event_t *ev = event_make(p, hf_json_array_get(arr, i), text + at,
                                    APR_ARRAY_IDX(lens, i, apr_size_t),
                                    (int)i, err);
        if (!ev)
            return HF_E_MALFORMED;
        APR_ARRAY_PUSH(events, hf_event_t *) = ev;
    }
    return HF_OK;
}

/* The counts of the scan decide before json-c builds anything: a batch's
 * length and the tree's size are known from the text alone. */
static hf_rc_t json_precheck(const char *text, apr_size_t len, int max_events,
                             const char **err)
{
    hf_json_size_t size;
    apr_size_t i = 0;

    while (i < len && strchr(" \t\r\n", text[i]) && text[i])
        i++;
    if (hf_json_measure(text, len, HF_JSON_MAX_DEPTH, 0, &size)) {
        *err = "invalid_json";
        return HF_E_MALFORMED;
    }
    if (i < len && text[i] == '[') {
        if (size.elements == 0) {
            *err = "empty_batch";
            return HF_E_MALFORMED;
        }
        if (size.elements > (apr_size_t)max_events) {
            *err = "too_many_events";
            return HF_E_TOO_LARGE;
        }
    }
    if (!hf_json_size_ok(&size)) {
        *err = "too_many_values";
        return HF_E_TOO_LARGE;
    }
    return HF_OK;
}

hf_rc_t hf_events_from_json(apr_pool_t *p, const char *text, apr_size_t len,
                            int max_events, apr_array_header_t **events,
                            const char **err)
{
    const char *why;
    hf_json_t *root;
    hf_event_t *ev;
    hf_rc_t rc;

    *events = apr_array_make(p, 1, sizeof(hf_event_t *));
    if ((rc = json_precheck(text, len, max_events, err)) != HF_OK)
        return rc;
    if (!(root = hf_json_parse(p, text, len, &why))) {
        *err = "invalid_json";
        return HF_E_MALFORMED;
    }
    if (hf_json_is_array(root))
        return events_from_array(p, root, text, len, max_events, *events, err);
    /* The object's text without surrounding white space. */
    while (len && strchr(" \t\r\n", *text)) {
        text++;
        len--;
    }
    while (len && strchr(" \t\r\n", text[len - 1]))
        len--;
    ev = event_make(p, root, text, len, 0, err);
    if (!ev)
        return HF_E_MALFORMED;
    APR_ARRAY_PUSH(*events, hf_event_t *) = ev;
    return HF_OK;
}

/* event_make from an element's text alone: an object (checked with the
 * body) and its type as json-c would have kept it. */
static hf_event_t *event_from_text(apr_pool_t *p, const char *text,
                                   apr_size_t len, int index, const char **err)
{
    const char *type;

    if (!len || text[0] != '{') {
        *err = "invalid_event";
        return NULL;
    }
    type = hf_json_text_type(p, text, len);
    if (!hf_event_type_valid(type)) {
        *err = "invalid_type";
        return NULL;
    }
    return event_new(p, NULL, type, text, len, index);
}

hf_rc_t hf_events_from_json_text(apr_pool_t *p, const char *text,
                                 apr_size_t len, int max_events,
                                 apr_array_header_t **events,
                                 const char **err)
{
    apr_array_header_t *starts, *lens;
    hf_event_t *ev;
    hf_rc_t rc;
    int i;

    *events = apr_array_make(p, 1, sizeof(hf_event_t *));
    if ((rc = json_precheck(text, len, max_events, err)) != HF_OK)
        return rc;
    while (len && strchr(" \t\r\n", *text)) {
        text++;
        len--;
    }
    while (len && strchr(" \t\r\n", text[len - 1]))
        len--;
    if (len && text[0] == '[') {
        /* The precheck counted between 1 and max_events elements. */
        starts = apr_array_make(p, 16, sizeof(apr_size_t));
        lens = apr_array_make(p, 16, sizeof(apr_size_t));
        if (hf_json_array_spans(text, len, starts, lens)) {
            *err = "invalid_json";
            return HF_E_MALFORMED;
        }
        for (i = 0; i < starts->nelts; i++) {
            ev = event_from_text(p, text + APR_ARRAY_IDX(starts, i, apr_size_t),
                                 APR_ARRAY_IDX(lens, i, apr_size_t), i, err);
            if (!ev)
                return HF_E_MALFORMED;
            APR_ARRAY_PUSH(*events, hf_event_t *) = ev;
        }
        return HF_OK;
    }
    /* json-c parses a bare null into nothing: hf_json_parse refuses it. */
    if (len == 4 && !memcmp(text, "null", 4)) {
        *err = "invalid_json";
        return HF_E_MALFORMED;
    }
    if (!(ev = event_from_text(p, text, len, 0, err)))
        return HF_E_MALFORMED;
    APR_ARRAY_PUSH(*events, hf_event_t *) = ev;
    return HF_OK;
}

/* Fields whose value is a JSON object carried as a string. */
static int is_json_field(const char *name)
{
    return !strcmp(name, "profile") || !strcmp(name, "job")
           || !strcmp(name, "action");
}

hf_rc_t hf_events_from_form(apr_pool_t *p, const char *body, apr_size_t len,
                            apr_array_header_t **events, const char **err)
{
    apr_array_header_t *fields = hf_form_parse(p, body, len);
    hf_json_t *obj = hf_json_new_object(p);
    const char *text;
    apr_size_t text_len;
    hf_event_t *ev;
    int i;

    *events = apr_array_make(p, 1, sizeof(hf_event_t *));
    if (!fields || fields->nelts == 0) {
        *err = "invalid_form";
        return HF_E_MALFORMED;
    }
    for (i = 0; i < fields->nelts; i++) {
        const hf_form_field_t *f = &APR_ARRAY_IDX(fields, i, hf_form_field_t);
        if (is_json_field(f->name)) {
            /* One level goes to the event object around it. */
            const char *why;
            hf_json_t *child = hf_json_parse_ex(p, f->value, strlen(f->value),
                                                HF_JSON_MAX_DEPTH - 1, 0,
                                                &why);
            if (!child || !hf_json_is_object(child)) {
                *err = "invalid_form";
                return HF_E_MALFORMED;
            }
            hf_json_put(obj, f->name, child);
        } else {
            hf_json_put_string(obj, f->name, f->value);
        }
    }
    /* No JSON arrived: the event's text is its canonical serialization.  It
     * is read again (durable mode), so it must be JSON as the parser takes
     * it: a field that is not UTF-8 makes it not. */
    text = hf_json_text(p, obj, &text_len);
    if (hf_json_check(text, text_len, HF_JSON_MAX_DEPTH, 0)) {
        *err = "invalid_form";
        return HF_E_MALFORMED;
    }
    ev = event_make(p, obj, text, text_len, 0, err);
    if (!ev)
        return HF_E_MALFORMED;
    APR_ARRAY_PUSH(*events, hf_event_t *) = ev;
    return HF_OK;
}

/* A JSON field's value as hf_events_from_form takes it: an object that
 * hf_json_parse_ex accepts one level down. */
static int json_field_ok(const char *v, apr_size_t n)
{
    hf_json_size_t size;

    while (n && strchr(" \t\r\n", *v)) {
        v++;
        n--;
    }
    return n && *v == '{'
           && !hf_json_measure(v, n, HF_JSON_MAX_DEPTH - 1, 0, &size)
           && hf_json_size_ok(&size);
}

hf_rc_t hf_events_from_form_text(apr_pool_t *p, const char *body,
                                 apr_size_t len, apr_array_header_t **events,
                                 const char **err)
{
    apr_array_header_t *fields = hf_form_parse(p, body, len), *parts;
    apr_hash_t *seen = apr_hash_make(p);
    const char *type = NULL, *text, *v;
    apr_size_t n;
    int i, odd;

    *events = apr_array_make(p, 1, sizeof(hf_event_t *));
    if (!fields || fields->nelts == 0) {
        *err = "invalid_form";
        return HF_E_MALFORMED;
    }
    parts = apr_array_make(p, 4 * fields->nelts + 1, sizeof(const char *));
    for (i = 0; i < fields->nelts; i++) {
        const hf_form_field_t *f = &APR_ARRAY_IDX(fields, i, hf_form_field_t);
        /* json-c keeps a name given twice where it came first, with its
         * last value: the tree says that. */
        if (apr_hash_get(seen, f->name, APR_HASH_KEY_STRING))
            return hf_events_from_form(p, body, len, events, err);
        apr_hash_set(seen, f->name, APR_HASH_KEY_STRING, f);
        if (!is_json_field(f->name)) {
            v = hf_json_text_string(p, f->value, strlen(f->value));
            if (!strcmp(f->name, "type"))
                type = f->value;
        } else if (!json_field_ok(f->value, strlen(f->value))) {
            *err = "invalid_form";
            return HF_E_MALFORMED;
        } else if (!(v = hf_json_text_canonical(p, f->value, strlen(f->value),
                                                &n, &odd))) {
            return hf_events_from_form(p, body, len, events, err);
        }
        APR_ARRAY_PUSH(parts, const char *) = i ? "," : "{";
        APR_ARRAY_PUSH(parts, const char *) =
            hf_json_text_string(p, f->name, strlen(f->name));
        APR_ARRAY_PUSH(parts, const char *) = ":";
        APR_ARRAY_PUSH(parts, const char *) = v;
    }
    APR_ARRAY_PUSH(parts, const char *) = "}";
    text = apr_array_pstrcat(p, parts, 0);
    n = strlen(text);
    if (hf_json_check(text, n, HF_JSON_MAX_DEPTH, 0)) {
        *err = "invalid_form";
        return HF_E_MALFORMED;
    }
    if (!hf_event_type_valid(type)) {
        *err = "invalid_type";
        return HF_E_MALFORMED;
    }
    APR_ARRAY_PUSH(*events, hf_event_t *) = event_new(p, NULL, type, text, n,
                                                      0);
    return HF_OK;
}
