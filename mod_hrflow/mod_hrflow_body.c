/*
 * mod_hrflow_body.c - a request's body read within a limit, and the small
 * JSON answer, for the endpoint (SetHandler hrflow-webhook) and the
 * gateway (HrflowVerify on) alike.
 *
 * The body is held once, in one buffer that grows as bytes arrive (never
 * reserved ahead of them: headers alone cost nothing), up to
 * HrflowMaxBody and, with a Content-Length, to exactly that size.  It is
 * malloc'ed, so that growing it moves it (mremap, for a large one) rather
 * than leaving the smaller copies in the request's pool; a cleanup of the
 * request's pool frees it.
 */
#include <stdlib.h>
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
    apr_size_t limit;     /* largest size: max + 1, or Content-Length + 1 */
} body_buf_t;

static apr_status_t free_body(void *buf)
{
    free(buf);
    return APR_SUCCESS;
}

/* Appends n bytes, the buffer doubling as it fills; OK, or the status of
 * a body past the limit, or of no memory left. */
static int body_append(apr_pool_t *p, body_buf_t *b, const char *data,
                       apr_size_t n)
{
    if (n >= b->limit - b->len)
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    if (b->len + n + 1 > b->cap) {
        apr_size_t cap = b->cap ? b->cap * 2 : HUGE_STRING_LEN;
        char *grown;
        if (cap < b->len + n + 1)
            cap = b->len + n + 1;
        if (cap > b->limit)
            cap = b->limit;
        if (b->buf)
            apr_pool_cleanup_kill(p, b->buf, free_body);
        if ((grown = realloc(b->buf, cap)))
            b->buf = grown;
        if (b->buf)
            apr_pool_cleanup_register(p, b->buf, free_body,
                                      apr_pool_cleanup_null);
        if (!grown)
            return HTTP_INTERNAL_SERVER_ERROR;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    return OK;
}

/* Takes one brigade's data; OK, DONE at the end of the body, or the HTTP
 * status of a broken or oversized one. */
static int take_brigade(request_rec *r, apr_bucket_brigade *bb,
                        body_buf_t *body)
{
    apr_bucket *b;

    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
         b = APR_BUCKET_NEXT(b)) {
        const char *data;
        apr_size_t n;
        int rc;

        if (AP_BUCKET_IS_ERROR(b))
            return ((ap_bucket_error *)b->data)->status;
        if (APR_BUCKET_IS_EOS(b))
            return DONE;
        if (APR_BUCKET_IS_METADATA(b))
            continue;
        if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS)
            return HTTP_BAD_REQUEST;
        if ((rc = body_append(r->pool, body, data, n)) != OK)
            return rc;
    }
    return OK;
}

int hrflow_read_body(request_rec *r, ap_filter_t *from, apr_off_t max,
                     hf_request_t *req)
{
    apr_bucket_brigade *bb;
    body_buf_t body = {NULL, 0, 0, 0};
    int rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK);
    apr_off_t length = r->read_chunked ? -1 : r->remaining;
    apr_off_t limit = ap_get_limit_req_body(r);

    /* httpd counts a chunked body against LimitRequestBody itself, except
     * in a proxied request's (ProxyPass): the gateway reads that one. */
    if (limit > 0 && limit < max)
        max = limit;

    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE || r->remaining > max)
        return too_large(r, req);
    if (rc != OK)
        return rc;
    body.limit = (apr_size_t)(length >= 0 ? length : max) + 1;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (rc == OK) {
        apr_status_t rv = ap_get_brigade(from, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, HUGE_STRING_LEN);
        rc = rv == APR_SUCCESS ? take_brigade(r, bb, &body)
                               : ap_map_http_request_error(rv,
                                                           HTTP_BAD_REQUEST);
        apr_brigade_cleanup(bb);
    }
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE)
        return too_large(r, req);
    /* The end before the Content-Length: someone read the body first. */
    if (rc == DONE && length >= 0 && (apr_off_t)body.len != length) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      HFLOGNO(01008) "the body ended after %" APR_SIZE_T_FMT
                      " of its %" APR_OFF_T_FMT " bytes: another module "
                      "read it before mod_hrflow", body.len, length);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
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
