/*
 * hf_env.c - an event's fields as handler variables (SPEC section 4).
 *
 * Payload variables come from flattening the event object; the event
 * variables are set after them so that they win a clash.  Payload variables
 * are bounded in number and bytes; what the bounds leave out is counted for
 * the log, and the handler still has the whole JSON on standard input.
 */
#include <string.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include "hrflow.h"

typedef struct {
    const char *name;
    const char *value;
    apr_size_t cost;         /* bytes of name and value */
    int gone;                /* left out: a clash brought a value over
                                the budget */
} var_t;

typedef struct {
    apr_pool_t *pool;
    apr_hash_t *index;       /* name -> var_t *, for clashes */
    apr_array_header_t *list;  /* var_t *, in the order first set */
    int count;               /* variables set */
    apr_size_t bytes;
    int dropped;
} flatten_t;

/* The shortest variable there can be: "HRFLOW_X" and an empty value. */
#define MIN_COST 8

/* Upper-cases and replaces anything outside A-Z0-9_ with '_'. */
static void variable_name(char *name, const char *path, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        char c = path[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        name[i] = c;
    }
    name[len] = '\0';
}

/* Takes one leaf, or leaves it out; non-zero when no further leaf can be
 * taken, so that the walk only counts the rest.  Nothing is allocated for
 * a leaf left out. */
static int add_leaf(void *ctx, const char *path, apr_size_t plen,
                    const char *value, apr_size_t vlen)
{
    flatten_t *f = ctx;
    /* An environment string ends at NUL: a "\u0000" cuts the value there. */
    apr_size_t n = strnlen(value, vlen);
    char name[HF_MAX_NAME_BYTES + 1];
    var_t *old, *v;
    int live;

    variable_name(name, path, plen);
    old = apr_hash_get(f->index, name, (apr_ssize_t)plen);
    live = old && !old->gone;
    if (!live && f->count >= HF_MAX_VARS) {
        f->dropped++;
        return 1;
    }
    if (live) {   /* a clash replaces: give back what the old value cost */
        f->bytes -= old->cost;
        f->count--;
        old->gone = 1;
    }
    if (f->bytes + plen + n > HF_MAX_VAR_BYTES) {
        f->dropped++;
        return f->bytes + MIN_COST > HF_MAX_VAR_BYTES;
    }
    if (!(v = old)) {
        v = apr_palloc(f->pool, sizeof *v);
        v->name = apr_pstrmemdup(f->pool, name, plen);
        APR_ARRAY_PUSH(f->list, var_t *) = v;
        apr_hash_set(f->index, v->name, (apr_ssize_t)plen, v);
    }
    v->value = apr_pstrmemdup(f->pool, value, n);
    v->cost = plen + n;
    v->gone = 0;
    f->bytes += v->cost;
    f->count++;
    return 0;
}

/* Splits "a.b.c" into three copies. */
static void type_parts(apr_pool_t *p, const char *type, const char *part[3])
{
    const char *dot1 = strchr(type, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;

    if (!dot2) {
        part[0] = part[1] = part[2] = "";
        return;
    }
    part[0] = apr_pstrmemdup(p, type, (apr_size_t)(dot1 - type));
    part[1] = apr_pstrmemdup(p, dot1 + 1, (apr_size_t)(dot2 - dot1 - 1));
    part[2] = apr_pstrdup(p, dot2 + 1);
}

/* The event's leaves into f: from its tree, or from its text when it came
 * without one, and then from a tree of it only where the text alone cannot
 * say what json-c would make of it (a member name twice, say). */
static apr_size_t flatten_event(apr_pool_t *p, const hf_event_t *ev,
                                flatten_t *f)
{
    const hf_json_t *j = ev->json;
    const char *why;
    apr_size_t skipped;
    int fallback;

    if (!j) {
        skipped = hf_json_flatten_text(p, ev->text, ev->len, "HRFLOW",
                                       HF_MAX_NAME_BYTES, add_leaf, f,
                                       &fallback);
        if (!fallback)
            return skipped;
        f->index = apr_hash_make(p);
        f->list = apr_array_make(p, 32, sizeof(var_t *));
        f->count = 0;
        f->bytes = 0;
        f->dropped = 0;
        if (!(j = hf_json_parse(p, ev->text, ev->len, &why)))
            return 0;  /* not reached: the text was checked with the body */
    }
    return hf_json_flatten(p, j, "HRFLOW", HF_MAX_NAME_BYTES, add_leaf, f);
}

/* An event variable, which wins a clash with a payload variable: added
 * without a search of the table when no payload variable has its name
 * (every name begins "HRFL", which a table's checksum is made of). */
static void event_var(const flatten_t *f, apr_table_t *vars, const char *name,
                      const char *value)
{
    const var_t *clash = apr_hash_get(f->index, name, APR_HASH_KEY_STRING);

    if (clash && !clash->gone)
        apr_table_setn(vars, name, value);
    else
        apr_table_addn(vars, name, value);
}

apr_table_t *hf_env_build(apr_pool_t *p, const hf_event_t *ev,
                          const hf_batch_t *batch, int *dropped)
{
    flatten_t f = {p, apr_hash_make(p), apr_array_make(p, 32, sizeof(var_t *)),
                   0, 0, 0};
    apr_table_t *vars;
    const char *part[3];
    apr_size_t skipped;
    int i;

    skipped = flatten_event(p, ev, &f);
    vars = apr_table_make(p, f.count + 9);
    for (i = 0; i < f.list->nelts; i++) {
        const var_t *v = APR_ARRAY_IDX(f.list, i, var_t *);
        if (!v->gone)
            apr_table_addn(vars, v->name, v->value);
    }
    type_parts(p, ev->type, part);
    event_var(&f, vars, "HRFLOW_EVENT_OBJECT", part[0]);
    event_var(&f, vars, "HRFLOW_EVENT_ACTION", part[1]);
    event_var(&f, vars, "HRFLOW_EVENT_STATUS", part[2]);
    event_var(&f, vars, "HRFLOW_EVENT_ID", ev->id);
    event_var(&f, vars, "HRFLOW_DELIVERY_ID", ev->delivery_id);
    event_var(&f, vars, "HRFLOW_EVENT_INDEX", apr_itoa(p, ev->index));
    event_var(&f, vars, "HRFLOW_EVENT_COUNT", apr_itoa(p, batch->count));
    event_var(&f, vars, "HRFLOW_SIGNATURE",
              batch->verified ? "verified" : "unsigned");
    event_var(&f, vars, "HRFLOW_ATTEMPT", apr_itoa(p, batch->attempt));
    *dropped = f.dropped + (int)skipped;
    return vars;
}

const char **hf_env_block(apr_pool_t *p, const apr_table_t *vars)
{
    const apr_array_header_t *a = apr_table_elts(vars);
    const apr_table_entry_t *e = (const apr_table_entry_t *)a->elts;
    const char **env = apr_palloc(p, (apr_size_t)(a->nelts + 2) * sizeof *env);
    int i, n = 0;

    env[n++] = "PATH=" HF_HANDLER_PATH;
    for (i = 0; i < a->nelts; i++)
        env[n++] = apr_pstrcat(p, e[i].key, "=", e[i].val, NULL);
    env[n] = NULL;
    return env;
}
