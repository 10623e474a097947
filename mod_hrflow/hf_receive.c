/*
 * hf_receive.c - one request, from bytes to events, and its answer.
 *
 * The checks run in the order that exposes least to an unknown sender:
 * method, size, signature, and only then the body is parsed.  When the
 * signature header carries SIG.PAYLOAD, the payload is the event source and
 * the body is not looked at.
 */
#include <string.h>
#include <apr_strings.h>
#include "hrflow.h"

static const char *const default_headers[] = {
    "HTTP-HRFLOW-SIGNATURE", "HRFLOW-SIGNATURE", "HTTP-RIMINDER-SIGNATURE",
    NULL};

int hf_receive_rc_http_status(hf_rc_t rc)
{
    switch (rc) {
    case HF_OK: return 200;
    case HF_E_METHOD: return 405;
    case HF_E_TOO_LARGE: return 413;
    case HF_E_MEDIA_TYPE: return 415;
    case HF_E_MALFORMED: return 400;
    case HF_E_UNSIGNED:
    case HF_E_SIGNATURE: return 401;
    case HF_E_SPOOL: return 503;
    case HF_E_HANDLER:
    case HF_E_CONFIG: break;
    }
    return 500;
}

int hf_receive_outcome_http_status(const hf_outcome_t *out)
{
    return out->rc == HF_OK && out->queued ? 202
                                           : hf_receive_rc_http_status(out->rc);
}

static void fail(hf_outcome_t *out, hf_rc_t rc, const char *error)
{
    out->rc = rc;
    out->error = error;
}

static const char *signature_value(const hf_config_t *cfg,
                                   const hf_request_t *req)
{
    const char *v;
    int i;

    if (cfg->signature_header)
        return req->header(req->header_ctx, cfg->signature_header);
    for (i = 0; default_headers[i]; i++)
        if ((v = req->header(req->header_ctx, default_headers[i])) && *v)
            return v;
    return NULL;
}

/* Verifies the sender; may point *src at a signed payload.  0: go on. */
static int check_sender(apr_pool_t *p, const hf_config_t *cfg,
                        const hf_request_t *req, hf_outcome_t *out,
                        hf_signature_t *sig)
{
    const char *value = signature_value(cfg, req);
    int mode = hf_config_signature(cfg);

    memset(sig, 0, sizeof *sig);
    if (!value || !*value) {
        if (mode == HF_SIG_REQUIRED)
            return fail(out, HF_E_UNSIGNED, "missing_signature"), -1;
        return 0;
    }
    hf_verify_signature(p, value, req->body, req->body_len, cfg->secrets, sig);
    if (mode != HF_SIG_OFF && !sig->matched)
        return fail(out, HF_E_SIGNATURE, "invalid_signature"), -1;
    out->verified = mode != HF_SIG_OFF && sig->matched;
    if (sig->payload_bad)
        return fail(out, HF_E_MALFORMED, "invalid_base64"), -1;
    return 0;
}

void hf_receive(apr_pool_t *p, const hf_config_t *cfg,
                const hf_request_t *req, hf_outcome_t *out)
{
    hf_signature_t sig;

    hf_receive_signed(p, cfg, req, out, &sig);
}

typedef hf_rc_t events_from_json_fn(apr_pool_t *p, const char *text,
                                    apr_size_t len, int max_events,
                                    apr_array_header_t **events,
                                    const char **err);

typedef hf_rc_t events_from_form_fn(apr_pool_t *p, const char *body,
                                    apr_size_t len,
                                    apr_array_header_t **events,
                                    const char **err);

static void receive(apr_pool_t *p, const hf_config_t *cfg,
                    const hf_request_t *req, hf_outcome_t *out,
                    hf_signature_t *sigp, events_from_json_fn *from_json,
                    events_from_form_fn *from_form)
{
    hf_signature_t sig;
    const char *error = NULL;
    hf_rc_t rc;

    memset(sigp, 0, sizeof *sigp);
    memset(out, 0, sizeof *out);
    out->events = apr_array_make(p, 1, sizeof(hf_event_t *));
    if (!req->method || strcmp(req->method, "POST") != 0)
        return fail(out, HF_E_METHOD, "method_not_allowed");
    if (req->body_too_large || (apr_off_t)req->body_len > hf_config_max_body(cfg))
        return fail(out, HF_E_TOO_LARGE, "body_too_large");
    if (hf_config_check_endpoint(p, cfg))
        return fail(out, HF_E_CONFIG, "server_misconfigured");
    if (check_sender(p, cfg, req, out, &sig) != 0)
        return;
    *sigp = sig;
    if (sig.payload) {
        rc = from_json(p, (const char *)sig.payload, sig.payload_len,
                       hf_config_max_events(cfg), &out->events, &error);
    } else {
        switch (hf_event_body_kind(req->content_type)) {
        case HF_BODY_JSON:
            rc = from_json(p, req->body, req->body_len,
                           hf_config_max_events(cfg), &out->events, &error);
            break;
        case HF_BODY_FORM:
            rc = from_form(p, req->body, req->body_len, &out->events,
                           &error);
            break;
        default:
            return fail(out, HF_E_MEDIA_TYPE, "unsupported_media_type");
        }
    }
    if (rc != HF_OK)
        fail(out, rc, error);
}

void hf_receive_signed(apr_pool_t *p, const hf_config_t *cfg,
                       const hf_request_t *req, hf_outcome_t *out,
                       hf_signature_t *sig)
{
    receive(p, cfg, req, out, sig, hf_events_from_json, hf_events_from_form);
}

void hf_receive_text(apr_pool_t *p, const hf_config_t *cfg,
                     const hf_request_t *req, hf_outcome_t *out,
                     hf_signature_t *sig)
{
    receive(p, cfg, req, out, sig, hf_events_from_json_text,
            hf_events_from_form_text);
}

const char *hf_receive_response_body(apr_pool_t *p, const hf_outcome_t *out)
{
    int n = out->events ? out->events->nelts : 0;

    if (out->rc == HF_OK && out->queued)
        return apr_psprintf(p,
                            "{\"status\":\"accepted\",\"events\":%d,"
                            "\"queued\":%d,\"ignored\":%d}\n",
                            n, out->queued, out->ignored);
    if (out->rc == HF_OK)
        return apr_psprintf(p,
                            "{\"status\":\"ok\",\"events\":%d,\"handled\":%d,"
                            "\"ignored\":%d}\n",
                            n, out->handled, out->ignored);
    if (out->rc == HF_E_HANDLER)
        return apr_psprintf(p,
                            "{\"status\":\"error\",\"error\":\"%s\","
                            "\"events\":%d,\"handled\":%d,\"ignored\":%d,"
                            "\"failed\":%d,\"not_run\":%d}\n",
                            out->error, n, out->handled, out->ignored,
                            out->failed, out->not_run);
    return apr_psprintf(p, "{\"status\":\"error\",\"error\":\"%s\"}\n",
                        out->error ? out->error : "internal");
}

void hf_receive_log_refusal(apr_pool_t *p, const hf_config_t *cfg,
                            const hf_outcome_t *out, const hf_logger_t *log)
{
    /* A 401 is someone sending forged or stale requests: worth a warning.
     * A failed handler already has its event's line. */
    switch (out->rc) {
    case HF_OK:
    case HF_E_HANDLER:
        return;
    case HF_E_CONFIG:
        hf_log(log, HF_LOG_ERR, p, HFLOGNO(00301) "refused with 500: %s",
               hf_config_check_endpoint(p, cfg));
        return;
    default: {
        /* A bad signature is worth a warning: a misconfigured sender, or
         * someone trying. */
        int bad_sig = out->rc == HF_E_SIGNATURE || out->rc == HF_E_UNSIGNED;

        hf_log(log, bad_sig ? HF_LOG_WARNING : HF_LOG_INFO, p,
               HFLOGNO(00302) "refused with %d: %s",
               hf_receive_rc_http_status(out->rc), out->error);
    }
    }
}
