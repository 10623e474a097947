/*
 * hf_form.c - application/x-www-form-urlencoded bodies.
 *
 * '+' is a space and %XX a byte; a '%' not followed by two hex digits, or a
 * field without a name, makes the whole body malformed rather than guessed at.
 */
#include <string.h>
#include "hrflow.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes [s, s+len) into a new string; NULL on a bad escape or a NUL. */
static char *unescape(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, len + 1), *d = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            *d++ = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return NULL;
            hi = hex_digit(s[i + 1]);
            lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            *d++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *d++ = s[i];
        }
    }
    *d = '\0';
    return out;
}

apr_array_header_t *hf_form_parse(apr_pool_t *p, const char *body,
                                  apr_size_t len)
{
    apr_array_header_t *fields = apr_array_make(p, 8, sizeof(hf_form_field_t));
    const char *end = body + len, *s = body;

    while (s < end) {
        const char *amp = memchr(s, '&', (apr_size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (apr_size_t)(stop - s));
        hf_form_field_t *f;

        if (stop > s) {    /* "a=1&&b=2": empty pieces are skipped */
            const char *name_end = eq ? eq : stop;
            f = apr_array_push(fields);
            f->name = unescape(p, s, (apr_size_t)(name_end - s));
            f->value = eq ? unescape(p, eq + 1, (apr_size_t)(stop - eq - 1))
                          : "";
            if (!f->name || !*f->name || !f->value)
                return NULL;
        }
        s = stop + 1;
    }
    return fields;
}
