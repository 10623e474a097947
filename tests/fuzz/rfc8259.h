/*
 * rfc8259.h - RFC 8259's JSON grammar as a recognizer, the oracle of the
 * fuzz targets that check that only JSON is taken for JSON: no single
 * quotes, no NaN or Infinity, no raw control characters in strings, no
 * leading zeros, nothing after the value.  Bytes past 0x7f in strings are
 * let through (UTF-8 is not checked here).
 */
#ifndef HRFLOW_FUZZ_RFC8259_H
#define HRFLOW_FUZZ_RFC8259_H

#include <string.h>
#include <apr_lib.h>

#define GRAMMAR_MAX_DEPTH 512

typedef struct {
    const unsigned char *s, *end;
    int depth;
    int too_deep;
} rfc_t;

static int rfc_value(rfc_t *r);

static void rfc_ws(rfc_t *r)
{
    while (r->s < r->end && *r->s && strchr(" \t\r\n", *r->s))
        r->s++;
}

static int rfc_literal(rfc_t *r, const char *word)
{
    apr_size_t n = strlen(word);

    if ((apr_size_t)(r->end - r->s) < n || memcmp(r->s, word, n) != 0)
        return 0;
    r->s += n;
    return 1;
}

static int rfc_digits(rfc_t *r)
{
    const unsigned char *start = r->s;

    while (r->s < r->end && *r->s >= '0' && *r->s <= '9')
        r->s++;
    return r->s > start;
}

static int rfc_number(rfc_t *r)
{
    if (r->s < r->end && *r->s == '-')
        r->s++;
    if (r->s < r->end && *r->s == '0')
        r->s++;
    else if (r->s >= r->end || *r->s < '1' || *r->s > '9' || !rfc_digits(r))
        return 0;
    if (r->s < r->end && *r->s == '.') {
        r->s++;
        if (!rfc_digits(r))
            return 0;
    }
    if (r->s < r->end && (*r->s == 'e' || *r->s == 'E')) {
        r->s++;
        if (r->s < r->end && (*r->s == '+' || *r->s == '-'))
            r->s++;
        if (!rfc_digits(r))
            return 0;
    }
    return 1;
}

static int rfc_string(rfc_t *r)
{
    int i;

    r->s++;                               /* the opening quote */
    while (r->s < r->end && *r->s != '"') {
        if (*r->s < 0x20)
            return 0;
        if (*r->s++ != '\\')
            continue;
        if (r->s >= r->end)
            return 0;
        if (*r->s == 'u') {
            for (i = 1; i <= 4; i++)
                if (r->s + i >= r->end || !apr_isxdigit(r->s[i]))
                    return 0;
            r->s += 5;
        } else if (*r->s && strchr("\"\\/bfnrt", *r->s)) {
            r->s++;
        } else {
            return 0;
        }
    }
    if (r->s >= r->end)
        return 0;
    r->s++;
    return 1;
}

/* Members or elements up to the closing bracket. */
static int rfc_container(rfc_t *r, unsigned char close, int object)
{
    if (++r->depth > GRAMMAR_MAX_DEPTH) {
        r->too_deep = 1;
        return 0;
    }
    r->s++;
    rfc_ws(r);
    if (r->s < r->end && *r->s == close) {
        r->s++;
        r->depth--;
        return 1;
    }
    for (;;) {
        if (object) {
            rfc_ws(r);
            if (r->s >= r->end || *r->s != '"' || !rfc_string(r))
                return 0;
            rfc_ws(r);
            if (r->s >= r->end || *r->s++ != ':')
                return 0;
        }
        if (!rfc_value(r))
            return 0;
        if (r->s >= r->end)
            return 0;
        if (*r->s == close)
            break;
        if (*r->s++ != ',')
            return 0;
    }
    r->s++;
    r->depth--;
    return 1;
}

/* ws value ws */
static int rfc_value(rfc_t *r)
{
    int ok;

    rfc_ws(r);
    if (r->s >= r->end)
        return 0;
    switch (*r->s) {
    case '{': ok = rfc_container(r, '}', 1); break;
    case '[': ok = rfc_container(r, ']', 0); break;
    case '"': ok = rfc_string(r); break;
    case 't': ok = rfc_literal(r, "true"); break;
    case 'f': ok = rfc_literal(r, "false"); break;
    case 'n': ok = rfc_literal(r, "null"); break;
    default: ok = rfc_number(r);
    }
    rfc_ws(r);
    return ok;
}

/* 1: JSON text; 0: not; -1: nested past what the recognizer follows. */
static int rfc_json_text(const char *text, apr_size_t len)
{
    rfc_t r = {(const unsigned char *)text, (const unsigned char *)text + len,
               0, 0};
    int ok = rfc_value(&r) && r.s == r.end;

    return r.too_deep ? -1 : ok;
}

#endif
