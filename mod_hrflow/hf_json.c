/*
 * hf_json.c - the JSON wrapper: the only file that includes json-c.
 *
 * Trees are reference counted by json-c; each tree handed out here is tied to
 * an APR pool by a cleanup, so callers never free anything.
 */
#include <string.h>
#include <json.h>
#include <apr_strings.h>
#include "hrflow.h"

static apr_status_t json_release(void *data)
{
    json_object_put(data);
    return APR_SUCCESS;
}

static hf_json_t *pool_owned(apr_pool_t *p, json_object *j)
{
    if (j)
        apr_pool_cleanup_register(p, j, json_release, apr_pool_cleanup_null);
    return j;
}

hf_json_t *hf_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                         const char **err)
{
    json_tokener *tok;
    json_object *j;
    enum json_tokener_error jerr;
    apr_size_t end, i;

    if (len > (apr_size_t)INT32_MAX) {
        *err = "JSON text too long";
        return NULL;
    }
    /* json-c stops at a NUL; one inside the text is malformed input. */
    if (memchr(text, '\0', len)) {
        *err = "NUL byte in JSON text";
        return NULL;
    }
    tok = json_tokener_new_ex(HF_JSON_MAX_DEPTH);
    if (!tok) {
        *err = "out of memory";
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    j = json_tokener_parse_ex(tok, text, (int)len);
    jerr = json_tokener_get_error(tok);
    if (j == NULL && jerr == json_tokener_continue) {
        /* A bare number needs to see the end of input to finish. */
        j = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (j == NULL || jerr != json_tokener_success) {
        *err = jerr == json_tokener_error_depth
                   ? "JSON nested too deeply"
                   : apr_pstrcat(p, "bad JSON: ",
                                 json_tokener_error_desc(jerr), NULL);
        json_object_put(j);
        return NULL;
    }
    for (i = end; i < len; i++) {
        if (!strchr(" \t\r\n", text[i])) {
            json_object_put(j);
            *err = "bad JSON: text after the value";
            return NULL;
        }
    }
    return pool_owned(p, j);
}

hf_json_t *hf_json_new_object(apr_pool_t *p)
{
    return pool_owned(p, json_object_new_object());
}

int hf_json_is_object(const hf_json_t *j)
{
    return json_object_is_type(j, json_type_object);
}

int hf_json_is_array(const hf_json_t *j)
{
    return json_object_is_type(j, json_type_array);
}

apr_size_t hf_json_array_length(const hf_json_t *j)
{
    return json_object_array_length(j);
}

hf_json_t *hf_json_array_get(const hf_json_t *j, apr_size_t i)
{
    return json_object_array_get_idx(j, i);
}

const char *hf_json_get_string(const hf_json_t *obj, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                     : NULL;
}

hf_json_t *hf_json_get(const hf_json_t *obj, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

const char *hf_json_as_string(const hf_json_t *j)
{
    return json_object_is_type(j, json_type_string) ? json_object_get_string(
                                                          (json_object *)j)
                                                    : NULL;
}

apr_int64_t hf_json_get_int(const hf_json_t *obj, const char *key,
                            apr_int64_t fallback)
{
    json_object *v;

    if (!json_object_object_get_ex(obj, key, &v)
        || !json_object_is_type(v, json_type_int))
        return fallback;
    return json_object_get_int64(v);
}

const char *hf_json_quote(apr_pool_t *p, const char *s)
{
    json_object *j = pool_owned(p, json_object_new_string(s));
    apr_size_t len;

    return hf_json_text(p, j, &len);
}

void hf_json_put_string(hf_json_t *obj, const char *key, const char *val)
{
    json_object_object_add(obj, key, json_object_new_string(val));
}

void hf_json_put(hf_json_t *obj, const char *key, hf_json_t *child)
{
    /* The child's own pool still drops its reference: take one more. */
    json_object_object_add(obj, key, json_object_get(child));
}

const char *hf_json_text(apr_pool_t *p, const hf_json_t *j, apr_size_t *len)
{
    size_t n;
    const char *s = json_object_to_json_string_length(
        (json_object *)j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
        &n);

    *len = n;
    return apr_pstrmemdup(p, s, n);
}

/* Advances past one JSON value that is known to be well formed. */
static apr_size_t skip_value(const char *t, apr_size_t i, apr_size_t len)
{
    int depth = 0, in_string = 0;

    for (; i < len; i++) {
        char c = t[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            depth--;
        } else if (c == ',' && depth == 0)
            return i;
    }
    return i;
}

int hf_json_array_spans(const char *t, apr_size_t len,
                        apr_array_header_t *starts, apr_array_header_t *lens)
{
    apr_size_t i = 0;

    while (i < len && strchr(" \t\r\n", t[i]))
        i++;
    if (i >= len || t[i] != '[')
        return -1;
    i++;
    for (;;) {
        apr_size_t start, end;
        while (i < len && strchr(" \t\r\n", t[i]))
            i++;
        if (i >= len)
            return -1;
        if (t[i] == ']')
            return 0;
        start = i;
        i = skip_value(t, i, len);
        end = i;
        while (end > start && strchr(" \t\r\n", t[end - 1]))
            end--;
        APR_ARRAY_PUSH(starts, apr_size_t) = start;
        APR_ARRAY_PUSH(lens, apr_size_t) = end - start;
        if (i < len && t[i] == ',')
            i++;
    }
}

static void walk(apr_pool_t *p, json_object *j, const char *path,
                 hf_json_leaf_fn *leaf, void *ctx)
{
    switch (json_object_get_type(j)) {
    case json_type_object: {
        json_object_object_foreach(j, key, child)
            walk(p, child, apr_pstrcat(p, path, "_", key, NULL), leaf, ctx);
        break;
    }
    case json_type_array: {
        apr_size_t i, n = json_object_array_length(j);
        for (i = 0; i < n; i++)
            walk(p, json_object_array_get_idx(j, i),
                 apr_psprintf(p, "%s_%" APR_SIZE_T_FMT, path, i), leaf, ctx);
        break;
    }
    case json_type_null:
        leaf(ctx, path, "", 0);
        break;
    case json_type_string:
        leaf(ctx, path, json_object_get_string(j),
             (apr_size_t)json_object_get_string_len(j));
        break;
    default: { /* numbers and booleans: their JSON text */
        size_t n;
        const char *s = json_object_to_json_string_length(
            j, JSON_C_TO_STRING_PLAIN, &n);
        leaf(ctx, path, s, n);
    }
    }
}

void hf_json_walk(apr_pool_t *p, const hf_json_t *j, const char *prefix,
                  hf_json_leaf_fn *leaf, void *ctx)
{
    if (json_object_is_type(j, json_type_object)) {
        json_object_object_foreach((json_object *)j, key, child)
            walk(p, child, apr_pstrcat(p, prefix, "_", key, NULL), leaf, ctx);
    }
}
