/*
 * mod_hrflow_body.c - a request's body read within a limit, and the small
 * JSON answer, for the endpoint (SetHandler hrflow-webhook) and the
 * gateway (HrflowVerify on) alike.
 *
 * The body is held once: with a Content-Length, in one buffer of that size
 * (which HrflowMaxBody bounds before anything is read); chunked, in a
 * buffer that doubles as it fills.
 */
#include <string.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <apr_strings.h>
#include "mod_hrflow.h"

APLOG_USE_MODULE(hrflow);

/* httpd's own limit (LimitRequestBody) is ours too: its 413 becomes the
 * JSON one, not httpd's HTML page. */
static int too_large(request_rec *r, hf_request_t *req)
{
    req->body_too_large = 1;
    r->connection->keepalive = AP_CONN_CLOSE;
    return OK;
}

typedef struct {
    char *buf;
    apr_size_t len, cap;
} body_buf_t;

/* Appends n bytes, growing the buffer (never past max + 1, the room of
 * the terminating NUL); 0, or -1 past max. */
static int body_append(apr_pool_t *p, body_buf_t *b, const char *data,
                       apr_size_t n, apr_off_t max)
{
    if ((apr_off_t)(b->len + n) > max)
        return -1;
    if (b->len + n + 1 > b->cap) {
        apr_size_t cap = b->cap ? b->cap * 2 : HUGE_STRING_LEN;
        char *grown;
        if (cap < b->len + n + 1)
            cap = b->len + n + 1;
        if ((apr_off_t)cap > max + 1)
            cap = (apr_size_t)max + 1;
        grown = apr_palloc(p, cap);
        if (b->len)
            memcpy(grown, b->buf, b->len);
        b->buf = grown;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    return 0;
}

/* Takes one brigade's data; OK, DONE at the end of the body, or the HTTP
 * status of a broken or oversized one. */
static int take_brigade(request_rec *r, apr_bucket_brigade *bb,
                        apr_off_t max, body_buf_t *body)
{
    apr_bucket *b;

    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
         b = APR_BUCKET_NEXT(b)) {
        const char *data;
        apr_size_t n;

        if (AP_BUCKET_IS_ERROR(b))
            return ((ap_bucket_error *)b->data)->status;
        if (APR_BUCKET_IS_EOS(b))
            return DONE;
        if (APR_BUCKET_IS_METADATA(b))
            continue;
        if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS)
            return HTTP_BAD_REQUEST;
        if (body_append(r->pool, body, data, n, max) != 0)
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    return OK;
}

int hrflow_read_body(request_rec *r, ap_filter_t *from, apr_off_t max,
                     hf_request_t *req)
{
    apr_bucket_brigade *bb;
    body_buf_t body = {NULL, 0, 0};
    int rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK);

    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE || r->remaining > max)
        return too_large(r, req);
    if (rc != OK)
        return rc;
    if (!r->read_chunked && r->remaining > 0) {
        body.cap = (apr_size_t)r->remaining + 1;
        body.buf = apr_palloc(r->pool, body.cap);
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (rc == OK) {
        apr_status_t rv = ap_get_brigade(from, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, HUGE_STRING_LEN);
        rc = rv == APR_SUCCESS ? take_brigade(r, bb, max, &body)
                               : ap_map_http_request_error(rv,
                                                           HTTP_BAD_REQUEST);
        apr_brigade_cleanup(bb);
    }
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE)
        return too_large(r, req);
    if (rc != DONE)
        return rc;
    if (!body.buf)
        body.buf = apr_pcalloc(r->pool, 1);
    body.buf[body.len] = '\0';
    req->body = body.buf;
    req->body_len = body.len;
    return OK;
}

int hrflow_respond(request_rec *r, const hf_outcome_t *out)
{
    r->status = hf_receive_outcome_http_status(out);
    if (out->rc == HF_E_METHOD)
        apr_table_setn(r->headers_out, "Allow", "POST");
    if (out->rc == HF_E_TOO_LARGE)
        r->connection->keepalive = AP_CONN_CLOSE;
    ap_set_content_type(r, "application/json");
    ap_rputs(hf_receive_response_body(r->pool, out), r);
    return OK;
}

static void log_to_request(void *ctx, int level, const char *msg)
{
    request_rec *r = ctx;

    ap_log_rerror(APLOG_MARK, level, 0, r, "%s", msg);
}

static int request_wants(void *ctx, int level)
{
    return APLOG_R_IS_LEVEL((request_rec *)ctx, level);
}

static const char *request_header(void *ctx, const char *name)
{
    return apr_table_get(((request_rec *)ctx)->headers_in, name);
}

void hrflow_request_init(request_rec *r, hf_request_t *req,
                         hf_logger_t *log)
{
    memset(req, 0, sizeof *req);
    req->method = r->method;
    req->content_type = apr_table_get(r->headers_in, "Content-Type");
    req->header = request_header;
    req->header_ctx = r;
    req->body = "";
    log->write = log_to_request;
    log->ctx = r;
    log->wants = request_wants;
}
