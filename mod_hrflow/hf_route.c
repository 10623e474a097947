/*
 * hf_route.c - which handler runs for an event type (SPEC section 3).
 *
 * Patterns are shell wildcards over event types: '*', '?' and [...] classes.
 * An exact type beats any pattern; among patterns the first listed wins.
 */
#include <string.h>
#include <apr_fnmatch.h>
#include "hrflow.h"

static int is_type_char(char c)
{
    return (c >= 'a' && c <= 'z') || c == '_' || c == '.';
}

const char *hf_route_pattern_check(const char *pat)
{
    const char *c;

    if (!pat || !*pat)
        return "empty pattern";
    for (c = pat; *c; c++) {
        if (*c == '[') {
            const char *close = strchr(c + 1, ']');
            if (!close || close == c + 1)
                return "unbalanced '[' in pattern";
            c = close;
        } else if (*c == ']') {
            return "unbalanced ']' in pattern";
        } else if (*c != '*' && *c != '?' && !is_type_char(*c)) {
            return "a pattern is made of a-z, '_', '.' and the wildcards "
                   "* ? [...]";
        }
    }
    return NULL;
}

const hf_handler_t *hf_route(const apr_array_header_t *handlers,
                             const char *type)
{
    const hf_handler_t *first_pattern = NULL;
    int i;

    for (i = 0; handlers && i < handlers->nelts; i++) {
        const hf_handler_t *h = &APR_ARRAY_IDX(handlers, i, hf_handler_t);
        if (h->exact) {
            if (!strcmp(h->pattern, type))
                return h;
        } else if (!first_pattern
                   && apr_fnmatch(h->pattern, type, 0) == APR_SUCCESS) {
            first_pattern = h;
        }
    }
    return first_pattern;
}
