/*
 * hf_json.c - the JSON wrapper: the only file that includes json-c.
 *
 * Trees are reference counted by json-c; each tree handed out here is tied to
 * an APR pool by a cleanup, so callers never free anything.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <json.h>
#include <apr_hash.h>
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

hf_json_t *hf_json_parse_ex(apr_pool_t *p, const char *text, apr_size_t len,
                            int max_depth, int flags, const char **err)
{
    json_tokener *tok;
    json_object *j;
    enum json_tokener_error jerr;
    hf_json_size_t size;
    const char *why;

    if (len > (apr_size_t)INT32_MAX) {
        *err = "JSON text too long";
        return NULL;
    }
    if ((why = hf_json_measure(text, len, max_depth, flags, &size))) {
        *err = apr_pstrcat(p, "bad JSON: ", why, NULL);
        return NULL;
    }
    /* json-c's tree costs far more than the text (an empty object is a
     * hash table): what the counts allow is all it may build. */
    if (!hf_json_size_ok(&size)) {
        *err = "too many JSON values";
        return NULL;
    }
    /* json-c refuses a container at its own max_depth: one more level, for
     * the scanner has already held the text to max_depth. */
    tok = json_tokener_new_ex(max_depth + 1);
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
    json_tokener_free(tok);
    if (j == NULL || jerr != json_tokener_success) {
        /* A bare null is json-c's NULL; anything else the scanner accepts
         * json-c should too, and is refused if not. */
        *err = jerr == json_tokener_success
                   ? "JSON null"
                   : apr_pstrcat(p, "bad JSON: ",
                                 json_tokener_error_desc(jerr), NULL);
        json_object_put(j);
        return NULL;
    }
    return pool_owned(p, j);
}

hf_json_t *hf_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                         const char **err)
{
    return hf_json_parse_ex(p, text, len, HF_JSON_MAX_DEPTH, 0, err);
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

/* A string that a C string can hold whole: one with a "\u0000" in it
 * would be cut short by every reader, so it counts as no string at all. */
static const char *c_string(json_object *v)
{
    const char *s;

    if (!json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    return strlen(s) == (size_t)json_object_get_string_len(v) ? s : NULL;
}

const char *hf_json_get_string(const hf_json_t *obj, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(obj, key, &v) ? c_string(v) : NULL;
}

hf_json_t *hf_json_get(const hf_json_t *obj, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

const char *hf_json_as_string(const hf_json_t *j)
{
    return c_string((json_object *)j);
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

/* ---- the RFC 8259 scanner --------------------------------------------------
 *
 * Every text reaches json-c only after this scanner accepted it, and the
 * spans of a batch's elements come from the same scan, so the two can never
 * disagree.  It is iterative (an explicit stack of open containers) and each
 * step consumes at least one byte or fails: linear time, bounded depth, and
 * no way to loop without progress.
 */

typedef struct {
    const char *t;
    apr_size_t len, i;
    int max_depth, depth, flags;
    char close[HF_JSON_DEPTH_LIMIT];  /* '}' or ']' of each open container */
    apr_array_header_t *starts, *lens; /* the top array's elements, or NULL */
    apr_size_t elem_start;
    int members;                       /* track the top object's members */
    hf_json_span_t name, value;        /* its last member, as far as read */
    hf_json_size_t size;               /* what was counted so far */
    const char *err;
} scan_t;

static int scan_fail(scan_t *s, const char *why)
{
    s->err = why;
    return -1;
}

static void skip_ws(scan_t *s)
{
    while (s->i < s->len
           && (s->t[s->i] == ' ' || s->t[s->i] == '\t' || s->t[s->i] == '\n'
               || s->t[s->i] == '\r'))
        s->i++;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* One UTF-8 sequence of two to four bytes: no overlong form, no surrogate,
 * nothing past U+10FFFF. */
static int scan_utf8(scan_t *s)
{
    const unsigned char *u = (const unsigned char *)s->t + s->i;
    apr_size_t n, k, left = s->len - s->i;
    unsigned long cp, min;

    if (u[0] >= 0xC2 && u[0] <= 0xDF)
        n = 2, cp = u[0] & 0x1Fu, min = 0x80;
    else if ((u[0] & 0xF0) == 0xE0)
        n = 3, cp = u[0] & 0x0Fu, min = 0x800;
    else if (u[0] >= 0xF0 && u[0] <= 0xF4)
        n = 4, cp = u[0] & 0x07u, min = 0x10000;
    else
        return scan_fail(s, "bad UTF-8 in a string");
    if (left < n)
        return scan_fail(s, "bad UTF-8 in a string");
    for (k = 1; k < n; k++) {
        if ((u[k] & 0xC0) != 0x80)
            return scan_fail(s, "bad UTF-8 in a string");
        cp = cp << 6 | (u[k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return scan_fail(s, "bad UTF-8 in a string");
    s->i += n;
    return 0;
}

/* Four hex digits after "\u" at s->i; -1 when they are not there. */
static long hex4(const scan_t *s)
{
    long v = 0;
    apr_size_t k;

    if (s->len - s->i < 6 || s->t[s->i] != '\\' || s->t[s->i + 1] != 'u')
        return -1;
    for (k = 2; k < 6; k++) {
        char c = s->t[s->i + k];
        int d = is_digit(c) ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One escape at s->i (the backslash).  A \u escape of a surrogate must be
 * a high one followed by a low one: alone it stands for no character.  A
 * member name may not hold \u0000: json-c cuts a name at it, so that
 * "type\u0000" would replace "type" behind the text's back. */
static int scan_escape(scan_t *s, int name)
{
    long u;

    if (s->i + 1 >= s->len)
        return scan_fail(s, "unterminated string");
    if (s->t[s->i + 1] != 'u') {
        if (!strchr("\"\\/bfnrt", s->t[s->i + 1]) || s->t[s->i + 1] == '\0')
            return scan_fail(s, "bad escape in a string");
        s->i += 2;
        return 0;
    }
    if ((u = hex4(s)) < 0)
        return scan_fail(s, "bad \\u escape in a string");
    s->i += 6;
    if (u == 0 && name)
        return scan_fail(s, "\\u0000 in a member name");
    if (u >= 0xDC00 && u <= 0xDFFF)
        return scan_fail(s, "unpaired surrogate in a string");
    if (u >= 0xD800 && u <= 0xDBFF) {
        if ((u = hex4(s)) < 0xDC00 || u > 0xDFFF)
            return scan_fail(s, "unpaired surrogate in a string");
        s->i += 6;
    }
    return 0;
}

static int scan_string(scan_t *s, int name)
{
    s->i++;  /* the opening quote */
    while (s->i < s->len) {
        unsigned char c = (unsigned char)s->t[s->i];
        if (c == '"') {
            s->i++;
            return 0;
        }
        if (c < 0x20)
            return scan_fail(s, "control character in a string");
        if (c == '\\') {
            if (scan_escape(s, name) != 0)
                return -1;
        } else if (c >= 0x80 && !(s->flags & HF_JSON_RAW_BYTES)) {
            if (scan_utf8(s) != 0)
                return -1;
        } else {
            s->i++;
        }
    }
    return scan_fail(s, "unterminated string");
}

/* Whether the integer's digits [d, d+n) fit where json-c keeps integers:
 * int64 when negative, uint64 otherwise.  json-c would clamp the others
 * (a variable would say 18446744073709551615 where stdin has more). */
static int integer_fits(const char *d, apr_size_t n, int negative)
{
    const char *max = negative ? "9223372036854775808" : "18446744073709551615";
    apr_size_t mlen = strlen(max);

    return n < mlen || (n == mlen && memcmp(d, max, n) <= 0);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(scan_t *s)
{
    const char *t = s->t;
    apr_size_t n = s->len, first;
    int negative = t[s->i] == '-';

    if (negative)
        s->i++;
    first = s->i;
    if (s->i < n && t[s->i] == '0')
        s->i++;
    else if (s->i < n && is_digit(t[s->i]))
        while (s->i < n && is_digit(t[s->i]))
            s->i++;
    else
        return scan_fail(s, "bad number");
    if ((s->i >= n || (t[s->i] != '.' && t[s->i] != 'e' && t[s->i] != 'E'))
        && !integer_fits(t + first, s->i - first, negative))
        return scan_fail(s, "integer out of range");
    if (s->i < n && t[s->i] == '.') {
        if (++s->i >= n || !is_digit(t[s->i]))
            return scan_fail(s, "bad number");
        while (s->i < n && is_digit(t[s->i]))
            s->i++;
    }
    if (s->i < n && (t[s->i] == 'e' || t[s->i] == 'E')) {
        if (++s->i < n && (t[s->i] == '+' || t[s->i] == '-'))
            s->i++;
        if (s->i >= n || !is_digit(t[s->i]))
            return scan_fail(s, "bad number");
        while (s->i < n && is_digit(t[s->i]))
            s->i++;
    }
    /* "01", "1x": a number runs into what cannot follow one. */
    if (s->i < n && (is_digit(t[s->i]) || isalpha((unsigned char)t[s->i])
                     || t[s->i] == '.' || t[s->i] == '-' || t[s->i] == '+'))
        return scan_fail(s, "bad number");
    return 0;
}

static int scan_literal(scan_t *s, const char *word)
{
    apr_size_t n = strlen(word);

    if (s->len - s->i < n || memcmp(s->t + s->i, word, n) != 0)
        return scan_fail(s, "unexpected character");
    s->i += n;
    if (s->i < s->len && isalnum((unsigned char)s->t[s->i]))
        return scan_fail(s, "unexpected character");
    return 0;
}

static int in_top_object(const scan_t *s)
{
    return s->members && s->depth == 1 && s->close[0] == '}';
}

/* An object member's name and colon, up to its value. */
static int scan_member_name(scan_t *s)
{
    apr_size_t start;

    skip_ws(s);
    if (s->i >= s->len || s->t[s->i] != '"')
        return scan_fail(s, "expected a member name");
    start = s->i + 1;
    if (scan_string(s, 1) != 0)
        return -1;
    if (in_top_object(s)) {
        s->name.start = start;
        s->name.len = s->i - 1 - start;
    }
    skip_ws(s);
    if (s->i >= s->len || s->t[s->i] != ':')
        return scan_fail(s, "expected ':'");
    s->i++;
    skip_ws(s);
    if (in_top_object(s))
        s->value.start = s->i;
    return 0;
}

/* Reads the start of a value: a whole scalar, or the opening of a container
 * (with an object's first member name).  1: a value ended; 0: a value is
 * next; -1: error. */
static int scan_value_begin(scan_t *s)
{
    char c;

    if (s->i >= s->len)
        return scan_fail(s, "unexpected end");
    c = s->t[s->i];
    s->size.values++;
    if (c == '{' || c == '[') {
        s->size.containers++;
        if (s->depth >= s->max_depth)
            return scan_fail(s, "nested too deeply");
        s->close[s->depth++] = c == '{' ? '}' : ']';
        s->i++;
        skip_ws(s);
        if (s->i < s->len && s->t[s->i] == s->close[s->depth - 1]) {
            s->i++;
            s->depth--;
            return 1;
        }
        return c == '{' ? scan_member_name(s) : 0;
    }
    if (c == '"')
        return scan_string(s, 0) != 0 ? -1 : 1;
    if (c == '-' || is_digit(c))
        return scan_number(s) != 0 ? -1 : 1;
    if (c == 't')
        return scan_literal(s, "true") != 0 ? -1 : 1;
    if (c == 'f')
        return scan_literal(s, "false") != 0 ? -1 : 1;
    if (c == 'n')
        return scan_literal(s, "null") != 0 ? -1 : 1;
    return scan_fail(s, "unexpected character");
}

static int in_top_array(const scan_t *s)
{
    return s->starts && s->depth == 1 && s->close[0] == ']';
}

/* After a value: closings, then a comma and what precedes the next value.
 * 1: the whole text's value ended; 0: a value is next; -1: error. */
static int scan_value_end(scan_t *s)
{
    for (;;) {
        if (in_top_array(s)) {
            APR_ARRAY_PUSH(s->starts, apr_size_t) = s->elem_start;
            APR_ARRAY_PUSH(s->lens, apr_size_t) = s->i - s->elem_start;
        }
        if (in_top_object(s))
            s->value.len = s->i - s->value.start;
        skip_ws(s);
        if (s->depth == 0)
            return 1;
        if (s->i >= s->len)
            return scan_fail(s, "unexpected end");
        if (s->t[s->i] == ',') {
            s->i++;
            skip_ws(s);
            return s->close[s->depth - 1] == '}' ? scan_member_name(s) : 0;
        }
        if (s->t[s->i] != s->close[s->depth - 1])
            return scan_fail(s, "expected ',' or the end of a container");
        s->i++;
        s->depth--;
    }
}

static const char *scan(scan_t *s)
{
    int r;

    if (s->max_depth < 1 || s->max_depth > HF_JSON_DEPTH_LIMIT)
        return "bad JSON depth limit";
    skip_ws(s);
    do {
        if (s->depth == 1 && s->close[0] == ']')
            s->size.elements++;
        if (in_top_array(s))
            s->elem_start = s->i;
        r = scan_value_begin(s);
        if (r == 1)   /* a value ended: close what it ends */
            r = scan_value_end(s);
    } while (r == 0);
    if (r < 0)
        return s->err;
    if (s->i != s->len)
        return "text after the value";
    return NULL;
}

/* A scanner over text, before its first byte. */
static void scan_init(scan_t *s, const char *t, apr_size_t len, int max_depth,
                      int flags)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->len = len;
    s->max_depth = max_depth;
    s->flags = flags;
}

const char *hf_json_measure(const char *text, apr_size_t len, int max_depth,
                            int flags, hf_json_size_t *size)
{
    scan_t s;
    const char *err;

    scan_init(&s, text, len, max_depth, flags);
    err = scan(&s);
    *size = s.size;
    return err;
}

const char *hf_json_check(const char *text, apr_size_t len, int max_depth,
                          int flags)
{
    hf_json_size_t size;

    return hf_json_measure(text, len, max_depth, flags, &size);
}

int hf_json_size_ok(const hf_json_size_t *size)
{
    return size->values <= HF_JSON_MAX_VALUES
           && size->containers <= HF_JSON_MAX_CONTAINERS;
}

const char *hf_json_array_spans(const char *t, apr_size_t len,
                                apr_array_header_t *starts,
                                apr_array_header_t *lens)
{
    scan_t s;

    scan_init(&s, t, len, HF_JSON_DEPTH_LIMIT, 0);
    s.starts = starts;
    s.lens = lens;
    skip_ws(&s);
    if (s.i >= len || t[s.i] != '[')
        return "not an array";
    return scan(&s);
}

int hf_json_last_member(const char *t, apr_size_t len, int max_depth,
                        int flags, hf_json_span_t *name, hf_json_span_t *value)
{
    scan_t s;

    scan_init(&s, t, len, max_depth, flags);
    s.members = 1;
    skip_ws(&s);
    if (s.i >= len || t[s.i] != '{' || scan(&s) || s.value.start == 0)
        return -1;
    *name = s.name;
    *value = s.value;
    return 0;
}

/* ---- flattening ----------------------------------------------------------
 *
 * One path buffer for the whole walk, and scalars formatted on the stack:
 * the walk itself allocates nothing per leaf.  Once the callback wants no
 * more, or where a path would not fit, leaves are only counted. */

typedef struct {
    char *path;
    apr_size_t len, max;
    hf_json_flatten_fn *leaf;
    void *ctx;
    int stopped;
    apr_size_t skipped;
} walk_t;

static apr_size_t count_leaves(json_object *j)
{
    apr_size_t n = 0, i, len;

    switch (json_object_get_type(j)) {
    case json_type_object: {
        json_object_object_foreach(j, key, child) {
            (void)key;
            n += count_leaves(child);
        }
        return n;
    }
    case json_type_array:
        len = json_object_array_length(j);
        for (i = 0; i < len; i++)
            n += count_leaves(json_object_array_get_idx(j, i));
        return n;
    default:
        return 1;
    }
}

/* A number as its JSON text: a parsed double keeps the text it came from
 * (json-c holds it as the object's userdata); integers are printed here. */
static const char *number_text(json_object *j, char *buf, apr_size_t size)
{
    const char *orig;
    apr_int64_t v;

    if (json_object_is_type(j, json_type_double)) {
        orig = json_object_get_userdata(j);
        if (orig)
            return orig;
        apr_snprintf(buf, size, "%.17g", json_object_get_double(j));
        return buf;
    }
    v = json_object_get_int64(j);
    if (v == APR_INT64_MAX)  /* or more: json-c keeps those unsigned */
        apr_snprintf(buf, size, "%" APR_UINT64_T_FMT,
                     (apr_uint64_t)json_object_get_uint64(j));
    else
        apr_snprintf(buf, size, "%" APR_INT64_T_FMT, v);
    return buf;
}

static void walk_leaf(walk_t *w, json_object *j)
{
    char buf[64];
    const char *v;
    apr_size_t n;

    switch (json_object_get_type(j)) {
    case json_type_null:
        v = "";
        n = 0;
        break;
    case json_type_string:
        v = json_object_get_string(j);
        n = (apr_size_t)json_object_get_string_len(j);
        break;
    case json_type_boolean:
        v = json_object_get_boolean(j) ? "true" : "false";
        n = strlen(v);
        break;
    default:
        v = number_text(j, buf, sizeof buf);
        n = strlen(v);
    }
    if (w->leaf(w->ctx, w->path, w->len, v, n) != 0)
        w->stopped = 1;
}

static void walk_value(walk_t *w, json_object *j);

/* Appends "_part" to the path for the child's walk, then takes it off. */
static void walk_child(walk_t *w, json_object *child, const char *part,
                       apr_size_t n)
{
    apr_size_t keep = w->len;

    if (w->stopped || w->len + 1 + n > w->max) {
        w->skipped += count_leaves(child);
        return;
    }
    w->path[w->len++] = '_';
    memcpy(w->path + w->len, part, n);
    w->len += n;
    w->path[w->len] = '\0';
    walk_value(w, child);
    w->len = keep;
    w->path[keep] = '\0';
}

static void walk_value(walk_t *w, json_object *j)
{
    char num[32];
    apr_size_t i, n;

    switch (json_object_get_type(j)) {
    case json_type_object: {
        json_object_object_foreach(j, key, child)
            walk_child(w, child, key, strlen(key));
        break;
    }
    case json_type_array:
        n = json_object_array_length(j);
        for (i = 0; i < n; i++) {
            apr_snprintf(num, sizeof num, "%" APR_SIZE_T_FMT, i);
            walk_child(w, json_object_array_get_idx(j, i), num, strlen(num));
        }
        break;
    default:
        walk_leaf(w, j);
    }
}

apr_size_t hf_json_flatten(apr_pool_t *p, const hf_json_t *j,
                           const char *prefix, apr_size_t max_path,
                           hf_json_flatten_fn *leaf, void *ctx)
{
    walk_t w;

    if (!json_object_is_type(j, json_type_object))
        return 0;
    memset(&w, 0, sizeof w);
    w.len = strlen(prefix);
    w.max = max_path;
    if (w.len > max_path)
        return count_leaves((json_object *)j);
    w.path = apr_palloc(p, max_path + 1);
    memcpy(w.path, prefix, w.len + 1);
    w.leaf = leaf;
    w.ctx = ctx;
    walk_value(&w, (json_object *)j);
    return w.skipped;
}

typedef struct {
    hf_json_leaf_fn *leaf;
    void *ctx;
} every_leaf_t;

static int every_leaf(void *ctx, const char *path, apr_size_t path_len,
                      const char *value, apr_size_t vlen)
{
    every_leaf_t *e = ctx;

    (void)path_len;
    e->leaf(e->ctx, path, value, vlen);
    return 0;
}

void hf_json_walk(apr_pool_t *p, const hf_json_t *j, const char *prefix,
                  hf_json_leaf_fn *leaf, void *ctx)
{
    every_leaf_t e = {leaf, ctx};

    hf_json_flatten(p, j, prefix, HF_MAX_NAME_BYTES, every_leaf, &e);
}

/* ---- flattening the text ---------------------------------------------------
 *
 * The same leaves as hf_json_flatten gives for json-c's tree of a text, read
 * from the text itself, which hf_json_check has accepted: no tree is built.
 * json-c keeps a duplicate member name's first position with its last
 * value, which a single pass cannot mirror, so a duplicate ends the walk and
 * is reported instead (the caller falls back on the tree), as does an
 * escaped surrogate pair for a character U+xD800-U+xDFFF, which json-c 0.16
 * turns into U+FFFD and other versions may not.  Names are kept per nesting
 * level, in a hash table cleared and reused, so that finding a duplicate
 * costs no more than the text.  A string without escapes is passed as it
 * stands in the text; one with escapes is unescaped into a buffer reused
 * for the next. */

typedef struct {
    const char *t;
    apr_size_t len, i;
    apr_pool_t *pool;
    char *path;
    apr_size_t plen, max;
    hf_json_flatten_fn *leaf;
    void *ctx;
    int stopped, fallback, depth;
    apr_size_t skipped;
    char *buf;                        /* unescaped strings */
    apr_size_t bufsize;
    apr_hash_t *names[HF_JSON_DEPTH_LIMIT + 1];  /* per open object */
} text_walk_t;

static void text_ws(const char *t, apr_size_t len, apr_size_t *i)
{
    while (*i < len && (t[*i] == ' ' || t[*i] == '\t' || t[*i] == '\n'
                        || t[*i] == '\r'))
        (*i)++;
}

/* From a string's opening quote at *i to just past its closing one; whether
 * it has an escape. */
static int text_string_skip(const char *t, apr_size_t len, apr_size_t *i)
{
    int escaped = 0;

    for ((*i)++; *i < len && t[*i] != '"'; (*i)++)
        if (t[*i] == '\\') {
            escaped = 1;
            (*i)++;  /* the escaped character: \u's digits hold no quote */
        }
    (*i)++;
    return escaped;
}

static unsigned text_hex4(const char *h)
{
    unsigned v = 0;
    int k;

    for (k = 0; k < 4; k++) {
        char c = h[k];
        v = v * 16 + (unsigned)(is_digit(c) ? c - '0'
                                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                                         : c - 'A' + 10);
    }
    return v;
}

/* The characters of [s, s+n), a checked string's inside, unescaped into
 * out (at least n bytes): its length there.  A \u0000 stays a NUL byte.
 * *odd is set when an escaped pair stands for U+xD800-U+xDFFF: json-c
 * 0.16 gives U+FFFD for those (it takes the character for a surrogate). */
static apr_size_t text_unescape(const char *s, apr_size_t n, char *out,
                                int *odd)
{
    apr_size_t i = 0, o = 0;
    unsigned long cp;

    while (i < n) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        switch (s[i + 1]) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': break;
        default: out[o++] = s[i + 1];  /* " \ / */
        }
        if (s[i + 1] != 'u') {
            i += 2;
            continue;
        }
        cp = text_hex4(s + i + 2);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  /* the scanner saw its pair */
            cp = 0x10000 + ((cp - 0xD800) << 10)
                 + (text_hex4(s + i + 2) - 0xDC00);
            i += 6;
            if ((cp & 0xF800) == 0xD800)
                *odd = 1;
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xC0 | cp >> 6);
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | cp >> 12);
            out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | cp >> 18);
            out[o++] = (char)(0x80 | (cp >> 12 & 0x3F));
            out[o++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

/* The string whose opening quote is at w->i, moving past it: as it stands
 * in the text when it has no escape, else unescaped into w->buf. */
static const char *text_string(text_walk_t *w, apr_size_t *n)
{
    apr_size_t start = w->i + 1, raw;

    if (!text_string_skip(w->t, w->len, &w->i)) {
        *n = w->i - 1 - start;
        return w->t + start;
    }
    raw = w->i - 1 - start;
    if (raw + 1 > w->bufsize) {
        w->bufsize = raw + 1 > 2 * w->bufsize ? raw + 1 : 2 * w->bufsize;
        w->buf = apr_palloc(w->pool, w->bufsize);
    }
    *n = text_unescape(w->t + start, raw, w->buf, &w->fallback);
    w->buf[*n] = '\0';
    return w->buf;
}

static int is_number_char(char c)
{
    return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e'
           || c == 'E';
}

/* A scalar at w->i, moving past it: its value as hf_json_flatten gives it,
 * or only its end when it is not to be passed on (emit 0). */
static const char *text_scalar(text_walk_t *w, int emit, char *num,
                               apr_size_t size, apr_size_t *n)
{
    const char *t = w->t + w->i;
    apr_size_t k = 0;
    int is_double = 0;

    switch (*t) {
    case '"':
        if (!emit) {
            text_string_skip(w->t, w->len, &w->i);
            return NULL;
        }
        return text_string(w, n);
    case 't':
        w->i += 4;
        *n = 4;
        return "true";
    case 'f':
        w->i += 5;
        *n = 5;
        return "false";
    case 'n':
        w->i += 4;
        *n = 0;
        return "";
    }
    while (w->i + k < w->len && is_number_char(t[k])) {
        if (t[k] == '.' || t[k] == 'e' || t[k] == 'E')
            is_double = 1;
        k++;
    }
    w->i += k;
    if (!emit)
        return NULL;
    if (is_double) {   /* json-c keeps a double's text as written */
        *n = k;
        return t;
    }
    /* An integer, which the scanner held to json-c's range, printed as
     * json-c prints it: "-0" is 0. */
    memcpy(num, t, k);
    num[k] = '\0';
    if (*t == '-')
        apr_snprintf(num, size, "%" APR_INT64_T_FMT,
                     apr_strtoi64(num, NULL, 10));
    else
        apr_snprintf(num, size, "%" APR_UINT64_T_FMT,
                     (apr_uint64_t)strtoull(num, NULL, 10));
    *n = strlen(num);
    return num;
}

static void text_value(text_walk_t *w, int emit);

/* The value at w->i as the child named [name, name+n) of the path. */
static void text_child(text_walk_t *w, int emit, const char *name,
                       apr_size_t n)
{
    apr_size_t keep = w->plen;

    text_ws(w->t, w->len, &w->i);
    if (emit && !w->stopped && w->plen + 1 + n <= w->max) {
        w->path[w->plen++] = '_';
        memcpy(w->path + w->plen, name, n);
        w->plen += n;
        w->path[w->plen] = '\0';
        text_value(w, 1);
        w->plen = keep;
        w->path[keep] = '\0';
    } else {
        text_value(w, 0);
    }
    text_ws(w->t, w->len, &w->i);
}

/* The names of the object opening at w->i, a table per nesting level,
 * cleared and reused; moves past the '{'. */
static apr_hash_t *text_object_open(text_walk_t *w)
{
    if (!w->names[w->depth])
        w->names[w->depth] = apr_hash_make(w->pool);
    else
        apr_hash_clear(w->names[w->depth]);
    w->i++;
    text_ws(w->t, w->len, &w->i);
    return w->names[w->depth++];
}

/* The member name at w->i, moving past it and its ':' to the value; NULL
 * with w->fallback set when the object already had it. */
static const char *text_member_name(text_walk_t *w, apr_hash_t *names,
                                    apr_size_t *n)
{
    const char *name = text_string(w, n);

    if (w->fallback)
        return NULL;
    if (name == w->buf)   /* the table keeps it: it must stay */
        name = apr_pstrmemdup(w->pool, name, *n);
    if (apr_hash_get(names, name, (apr_ssize_t)*n)) {
        w->fallback = 1;
        return NULL;
    }
    apr_hash_set(names, name, (apr_ssize_t)*n, name);
    text_ws(w->t, w->len, &w->i);
    w->i++;  /* ':' */
    return name;
}

static void text_object(text_walk_t *w, int emit)
{
    apr_hash_t *names = text_object_open(w);
    const char *name;
    apr_size_t n;

    while (w->t[w->i] != '}') {
        if (!(name = text_member_name(w, names, &n)))
            return;
        text_child(w, emit, name, n);
        if (w->fallback)
            return;
        if (w->t[w->i] == ',') {
            w->i++;
            text_ws(w->t, w->len, &w->i);
        }
    }
    w->i++;
    w->depth--;
}

static void text_array(text_walk_t *w, int emit)
{
    char num[32];
    apr_size_t k = 0;

    w->i++;
    text_ws(w->t, w->len, &w->i);
    while (w->t[w->i] != ']') {
        apr_snprintf(num, sizeof num, "%" APR_SIZE_T_FMT, k++);
        text_child(w, emit, num, strlen(num));
        if (w->fallback)
            return;
        if (w->t[w->i] == ',')
            w->i++;
    }
    w->i++;
}

static void text_value(text_walk_t *w, int emit)
{
    char num[32];
    const char *v;
    apr_size_t n;

    if (w->t[w->i] == '{') {
        text_object(w, emit);
        return;
    }
    if (w->t[w->i] == '[') {
        text_array(w, emit);
        return;
    }
    emit = emit && !w->stopped;
    v = text_scalar(w, emit, num, sizeof num, &n);
    if (w->fallback)
        return;
    if (!emit)
        w->skipped++;
    else if (w->leaf(w->ctx, w->path, w->plen, v, n) != 0)
        w->stopped = 1;
}

apr_size_t hf_json_flatten_text(apr_pool_t *p, const char *text,
                                apr_size_t len, const char *prefix,
                                apr_size_t max_path,
                                hf_json_flatten_fn *leaf, void *ctx,
                                int *fallback)
{
    text_walk_t *w = apr_pcalloc(p, sizeof *w);

    *fallback = 0;
    w->t = text;
    w->len = len;
    text_ws(text, len, &w->i);
    if (w->i >= len || text[w->i] != '{')
        return 0;
    w->pool = p;
    w->plen = strlen(prefix);
    w->max = max_path;
    w->leaf = leaf;
    w->ctx = ctx;
    if (w->plen <= max_path) {
        w->path = apr_palloc(p, max_path + 1);
        memcpy(w->path, prefix, w->plen + 1);
    }
    text_value(w, w->plen <= max_path);
    *fallback = w->fallback;
    return w->fallback ? 0 : w->skipped;
}

/* Past the value at *i of a checked text. */
static void text_skip_value(const char *t, apr_size_t len, apr_size_t *i)
{
    int depth = 0;

    do {
        if (t[*i] == '"') {
            text_string_skip(t, len, i);
        } else if (t[*i] == '{' || t[*i] == '[') {
            depth++;
            (*i)++;
        } else if (t[*i] == '}' || t[*i] == ']') {
            depth--;
            (*i)++;
        } else if (depth > 0) {
            (*i)++;
        } else {
            while (*i < len && !strchr(",}] \t\r\n", t[*i]))
                (*i)++;
        }
    } while (depth > 0 && *i < len);
}

const char *hf_json_text_type(apr_pool_t *p, const char *t, apr_size_t len)
{
    apr_size_t i = 0, start, raw, n, value = 0;
    char name[24], *s;
    int odd = 0;

    text_ws(t, len, &i);
    if (i >= len || t[i] != '{')
        return NULL;
    i++;
    text_ws(t, len, &i);
    while (i < len && t[i] != '}') {
        start = i + 1;
        text_string_skip(t, len, &i);
        raw = i - 1 - start;
        /* "type" escaped takes at most 24 bytes: \u0074\u0079\u0070\u0065 */
        n = raw <= sizeof name ? text_unescape(t + start, raw, name, &odd) : 0;
        text_ws(t, len, &i);
        i++;  /* ':' */
        text_ws(t, len, &i);
        if (n == 4 && memcmp(name, "type", 4) == 0)
            value = i;
        text_skip_value(t, len, &i);
        text_ws(t, len, &i);
        if (i < len && t[i] == ',') {
            i++;
            text_ws(t, len, &i);
        }
    }
    if (!value || t[value] != '"')
        return NULL;
    i = value;
    text_string_skip(t, len, &i);
    raw = i - 1 - (value + 1);
    s = apr_palloc(p, raw + 1);
    odd = 0;
    n = text_unescape(t + value + 1, raw, s, &odd);
    s[n] = '\0';
    return memchr(s, '\0', n) || odd ? NULL : s;
}

/* ---- json-c's text of a text ------------------------------------------------
 *
 * What hf_json_text gives for json-c's tree of a checked text, written from
 * the text: members and elements in order without white space, strings
 * escaped as json-c escapes them (with JSON_C_TO_STRING_NOSLASHESCAPE),
 * numbers as text_scalar gives them.  The same two cases as the walk above
 * (a member name twice, an odd escaped pair) are left to the tree. */

typedef struct {
    char *b;
    apr_size_t n, cap;
    apr_pool_t *pool;
} text_out_t;

static void out_put(text_out_t *o, const char *s, apr_size_t n)
{
    if (o->n + n + 1 > o->cap) {
        apr_size_t cap = o->cap * 2 > o->n + n + 1 ? o->cap * 2
                                                   : o->n + n + 1;
        char *b = apr_palloc(o->pool, cap);
        if (o->n)
            memcpy(b, o->b, o->n);
        o->b = b;
        o->cap = cap;
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
}

/* A string's characters as json-c's json_escape_str writes them. */
static void out_escaped(text_out_t *o, const char *s, apr_size_t n)
{
    static const char hex[] = "0123456789abcdef";
    apr_size_t i, from = 0;
    char esc[7];

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        switch (c) {
        case '\b': e = "\\b"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\f': e = "\\f"; break;
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        default:
            if (c < ' ') {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xf];
                esc[6] = '\0';
                e = esc;
            }
        }
        if (!e)
            continue;
        out_put(o, s + from, i - from);
        out_put(o, e, strlen(e));
        from = i + 1;
    }
    out_put(o, s + from, n - from);
}

static void out_string(text_out_t *o, const char *s, apr_size_t n)
{
    out_put(o, "\"", 1);
    out_escaped(o, s, n);
    out_put(o, "\"", 1);
}

static void canon_value(text_walk_t *w, text_out_t *o);

/* The value at w->i, then past the ',' that may follow it; 0 when only the
 * tree can tell. */
static int canon_item(text_walk_t *w, text_out_t *o)
{
    canon_value(w, o);
    if (w->fallback)
        return 0;
    text_ws(w->t, w->len, &w->i);
    if (w->t[w->i] == ',') {
        w->i++;
        text_ws(w->t, w->len, &w->i);
    }
    return 1;
}

static void canon_object(text_walk_t *w, text_out_t *o)
{
    apr_hash_t *names = text_object_open(w);
    const char *name;
    apr_size_t n;
    int first = 1;

    out_put(o, "{", 1);
    while (w->t[w->i] != '}') {
        if (!(name = text_member_name(w, names, &n)))
            return;
        if (!first)
            out_put(o, ",", 1);
        first = 0;
        out_string(o, name, n);
        out_put(o, ":", 1);
        text_ws(w->t, w->len, &w->i);
        if (!canon_item(w, o))
            return;
    }
    out_put(o, "}", 1);
    w->i++;
    w->depth--;
}

static void canon_array(text_walk_t *w, text_out_t *o)
{
    int first = 1;

    out_put(o, "[", 1);
    w->i++;
    text_ws(w->t, w->len, &w->i);
    while (w->t[w->i] != ']') {
        if (!first)
            out_put(o, ",", 1);
        first = 0;
        if (!canon_item(w, o))
            return;
    }
    out_put(o, "]", 1);
    w->i++;
}

static void canon_value(text_walk_t *w, text_out_t *o)
{
    char num[32];
    const char *v;
    apr_size_t n;
    char c = w->t[w->i];

    if (c == '{')
        canon_object(w, o);
    else if (c == '[')
        canon_array(w, o);
    else if (c == 'n') {
        w->i += 4;
        out_put(o, "null", 4);
    }
    else {
        v = text_scalar(w, 1, num, sizeof num, &n);
        if (c == '"')
            out_string(o, v, n);
        else
            out_put(o, v, n);
    }
}

const char *hf_json_text_canonical(apr_pool_t *p, const char *text,
                                   apr_size_t len, apr_size_t *out_len,
                                   int *fallback)
{
    text_walk_t *w = apr_pcalloc(p, sizeof *w);
    text_out_t o = {NULL, 0, 0, p};

    w->t = text;
    w->len = len;
    w->pool = p;
    text_ws(text, len, &w->i);
    o.cap = len + 16;
    o.b = apr_palloc(p, o.cap);
    canon_value(w, &o);
    *fallback = w->fallback;
    o.b[o.n] = '\0';
    *out_len = o.n;
    return w->fallback ? NULL : o.b;
}


const char *hf_json_text_string(apr_pool_t *p, const char *s, apr_size_t n)
{
    text_out_t o = {NULL, 0, 0, p};

    o.cap = n + 16;
    o.b = apr_palloc(p, o.cap);
    out_string(&o, s, n);
    o.b[o.n] = '\0';
    return o.b;
}
