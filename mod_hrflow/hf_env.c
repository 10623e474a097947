/*
 * hf_env.c - an event's fields as handler variables (SPEC section 4).
 *
 * Payload variables come from flattening the event object; the event
 * variables are set after them so that they win a clash.  Payload variables
 * are bounded in number and bytes; what the bounds leave out is counted for
 * the log, and the handler still has the whole JSON on standard input.
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"

typedef struct {
    apr_pool_t *pool;
    apr_table_t *vars;
    apr_size_t bytes;
    int dropped;
} flatten_t;

/* Upper-cases and replaces anything outside A-Z0-9_ with '_'. */
static char *variable_name(apr_pool_t *p, const char *path)
{
    char *name = apr_pstrdup(p, path), *c;

    for (c = name; *c; c++) {
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
        else if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    }
    return name;
}

static void add_leaf(void *ctx, const char *path, const char *value,
                     apr_size_t vlen)
{
    flatten_t *f = ctx;
    /* An environment string ends at NUL: a "\u0000" cuts the value there. */
    apr_size_t n = strnlen(value, vlen);
    const char *name = variable_name(f->pool, path);
    const char *old = apr_table_get(f->vars, name);

    if (old) {   /* a clash replaces: give back what the old value cost */
        f->bytes -= strlen(old);
    } else if (apr_table_elts(f->vars)->nelts >= HF_MAX_VARS) {
        f->dropped++;
        return;
    }
    if (f->bytes + n > HF_MAX_VAR_BYTES) {
        if (old)
            apr_table_unset(f->vars, name);
        f->dropped++;
        return;
    }
    f->bytes += n;
    apr_table_setn(f->vars, name, apr_pstrmemdup(f->pool, value, n));
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

apr_table_t *hf_env_build(apr_pool_t *p, const hf_event_t *ev,
                          const hf_batch_t *batch, int *dropped)
{
    flatten_t f = {p, apr_table_make(p, 32), 0, 0};
    const char *part[3];

    hf_json_walk(p, ev->json, "HRFLOW", add_leaf, &f);
    type_parts(p, ev->type, part);
    apr_table_setn(f.vars, "HRFLOW_EVENT_OBJECT", part[0]);
    apr_table_setn(f.vars, "HRFLOW_EVENT_ACTION", part[1]);
    apr_table_setn(f.vars, "HRFLOW_EVENT_STATUS", part[2]);
    apr_table_setn(f.vars, "HRFLOW_EVENT_ID", ev->id);
    apr_table_setn(f.vars, "HRFLOW_DELIVERY_ID", ev->delivery_id);
    apr_table_setn(f.vars, "HRFLOW_EVENT_INDEX",
                   apr_itoa(p, ev->index));
    apr_table_setn(f.vars, "HRFLOW_EVENT_COUNT", apr_itoa(p, batch->count));
    apr_table_setn(f.vars, "HRFLOW_SIGNATURE",
                   batch->verified ? "verified" : "unsigned");
    apr_table_setn(f.vars, "HRFLOW_ATTEMPT", apr_itoa(p, batch->attempt));
    *dropped = f.dropped;
    return f.vars;
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
