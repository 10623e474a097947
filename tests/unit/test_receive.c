/* test_receive.c - the request flow: checks in order, statuses, answers. */
#include <signal.h>
#include <apr_encode.h>
#include "unit.h"

static apr_table_t *headers;

static const char *lookup(void *ctx, const char *name)
{
    return apr_table_get(ctx, name);
}

static hf_config_t *config(const char *mode)
{
    hf_config_t *c = hf_config_create(pool);
    hf_config_ctx_t ctx = {pool, NULL};
    char *secret[] = {"k", NULL};
    char *m[] = {(char *)mode, NULL};

    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowSecret"), 1,
                    secret);
    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowSignature"), 1, m);
    return c;
}

static hf_rc_t receive(const hf_config_t *c, const char *method,
                       const char *ct, const char *body, hf_outcome_t *out)
{
    hf_request_t req = {method, ct, body, strlen(body), 0, lookup, headers};

    hf_receive(pool, c, &req, out);
    return out->rc;
}

static const char *sign_body(const char *body)
{
    unsigned char mac[32];
    char *hex = apr_palloc(pool, 65);

    hf_sha256_hmac("k", body, strlen(body), mac);
    hf_codec_hex_encode(mac, 32, hex);
    return hex;
}

/* SIG.PAYLOAD: the HMAC of the event and the event, both base64url. */
static const char *sign_payload(const char *ev)
{
    unsigned char mac[32];

    hf_sha256_hmac("k", ev, strlen(ev), mac);
    return apr_pstrcat(
        pool,
        apr_pencode_base64_binary(pool, mac, 32, APR_ENCODE_BASE64URL, NULL),
        ".",
        apr_pencode_base64(pool, ev, APR_ENCODE_STRING, APR_ENCODE_BASE64URL,
                           NULL),
        NULL);
}

static void setup_headers(void)
{
    pool_setup();
    headers = apr_table_make(pool, 4);
    /* As in every process that runs handlers (hf_run.c): /bin/true may
     * exit before it reads the event on its standard input. */
    signal(SIGPIPE, SIG_IGN);
}

START_TEST(statuses_in_order)
{
    hf_outcome_t out;
    const char *ev = "{\"type\":\"a.b.c\"}";

    ck_assert_int_eq(receive(config("required"), "GET", NULL, "", &out),
                     HF_E_METHOD);
    ck_assert_int_eq(hf_receive_rc_http_status(out.rc), 405);
    ck_assert_int_eq(receive(config("required"), "POST", "application/json",
                             ev, &out), HF_E_UNSIGNED);
    ck_assert_str_eq(out.error, "missing_signature");
    apr_table_set(headers, "Hrflow-Signature", "00");
    ck_assert_int_eq(receive(config("required"), "POST", "application/json",
                             ev, &out), HF_E_SIGNATURE);
    ck_assert_str_eq(
        hf_receive_response_body(pool, &out),
        "{\"status\":\"error\",\"error\":\"invalid_signature\"}\n");
    apr_table_set(headers, "Hrflow-Signature", sign_body(ev));
    ck_assert_int_eq(receive(config("required"), "POST", "text/plain", ev,
                             &out), HF_E_MEDIA_TYPE);
    ck_assert_int_eq(hf_receive_rc_http_status(out.rc), 415);
    ck_assert_int_eq(receive(config("required"), "POST", "application/json",
                             ev, &out), HF_OK);
    ck_assert(out.verified);
    ck_assert_int_eq(out.events->nelts, 1);
}
END_TEST

START_TEST(optional_and_off)
{
    hf_outcome_t out;
    const char *ev = "{\"type\":\"a.b.c\"}";

    ck_assert_int_eq(receive(config("optional"), "POST", "application/json",
                             ev, &out), HF_OK);
    ck_assert(!out.verified);
    apr_table_set(headers, "HTTP-HRFLOW-SIGNATURE", "bad");
    ck_assert_int_eq(receive(config("optional"), "POST", "application/json",
                             ev, &out), HF_E_SIGNATURE);
    ck_assert_int_eq(receive(config("off"), "POST", "application/json", ev,
                             &out), HF_OK);
    ck_assert(!out.verified);
}
END_TEST

START_TEST(signed_payload_replaces_body)
{
    hf_outcome_t out;
    const char *ev = "{\"type\":\"job.storing.update\"}";

    apr_table_set(headers, "http-hrflow-signature", sign_payload(ev));
    ck_assert_int_eq(receive(config("required"), "POST", NULL,
                             "ignored, not even JSON", &out), HF_OK);
    ck_assert_str_eq(APR_ARRAY_IDX(out.events, 0, hf_event_t *)->type,
                     "job.storing.update");
}
END_TEST

/* The gateway passes on what the events came from: the signed payload's
 * bytes when there is one, nothing of the signature when refused. */
START_TEST(signed_receive_gives_the_payload)
{
    hf_outcome_t out;
    hf_signature_t sig;
    const char *ev = "{\"type\":\"job.storing.update\"}";
    const char *body = "{\"type\":\"profile.parsing.success\"}";
    hf_request_t req = {"POST", "application/json", body, strlen(body), 0,
                        lookup, headers};

    apr_table_set(headers, "Hrflow-Signature", sign_body(body));
    hf_receive_signed(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    ck_assert_ptr_null(sig.payload);
    apr_table_set(headers, "Hrflow-Signature", sign_payload(ev));
    hf_receive_signed(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    ck_assert_uint_eq(sig.payload_len, strlen(ev));
    ck_assert(memcmp(sig.payload, ev, strlen(ev)) == 0);
    ck_assert_str_eq(APR_ARRAY_IDX(out.events, 0, hf_event_t *)->type,
                     "job.storing.update");
    apr_table_set(headers, "Hrflow-Signature", "00.e30");
    hf_receive_signed(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_E_SIGNATURE);
    ck_assert_ptr_null(sig.payload);
}
END_TEST

/* hf_receive_text: JSON bodies and signed payloads become events without
 * trees, with hf_receive_signed's outcome; a form body keeps its tree. */
START_TEST(text_receive_builds_no_tree)
{
    hf_outcome_t out, tree;
    hf_signature_t sig;
    const char *ev = "[{\"type\":\"job.storing.update\"}]";
    const char *body = "{\"type\":\"profile.parsing.success\",\"a\":1}";
    const char *form = "type=profile.parsing.success&a=1";
    const char *bad = "[{\"type\":\"a.b.c\"},{\"type\":7}]";
    hf_request_t req = {"POST", "application/json", body, strlen(body), 0,
                        lookup, headers};
    const hf_event_t *e;

    apr_table_set(headers, "Hrflow-Signature", sign_body(body));
    hf_receive_text(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    e = APR_ARRAY_IDX(out.events, 0, hf_event_t *);
    ck_assert_ptr_null(e->json);
    ck_assert_str_eq(e->type, "profile.parsing.success");
    ck_assert_ptr_eq(e->text, body);
    apr_table_set(headers, "Hrflow-Signature", sign_payload(ev));
    hf_receive_text(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    e = APR_ARRAY_IDX(out.events, 0, hf_event_t *);
    ck_assert_ptr_null(e->json);
    ck_assert_str_eq(e->type, "job.storing.update");
    ck_assert(e->text >= (const char *)sig.payload
              && e->text < (const char *)sig.payload + sig.payload_len);
    req.body = bad;
    req.body_len = strlen(bad);
    apr_table_set(headers, "Hrflow-Signature", sign_body(bad));
    hf_receive_text(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_E_MALFORMED);
    ck_assert_str_eq(out.error, "invalid_type");
    req.content_type = "application/x-www-form-urlencoded";
    req.body = form;
    req.body_len = strlen(form);
    apr_table_set(headers, "Hrflow-Signature", sign_body(form));
    hf_receive_text(pool, config("required"), &req, &out, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    e = APR_ARRAY_IDX(out.events, 0, hf_event_t *);
    ck_assert_ptr_null(e->json);
    /* The text json-c writes for the tree: the event's id is the same. */
    hf_receive_signed(pool, config("required"), &req, &tree, &sig);
    ck_assert_int_eq(tree.rc, HF_OK);
    ck_assert_str_eq(e->text,
                     APR_ARRAY_IDX(tree.events, 0, hf_event_t *)->text);
    ck_assert_str_eq(e->id, APR_ARRAY_IDX(tree.events, 0, hf_event_t *)->id);
    /* A JSON field given twice: json-c keeps its first place, last value. */
    form = "type=profile.parsing.success&profile={}&profile={\"a\":1}";
    req.body = form;
    req.body_len = strlen(form);
    apr_table_set(headers, "Hrflow-Signature", sign_body(form));
    hf_receive_text(pool, config("required"), &req, &out, &sig);
    hf_receive_signed(pool, config("required"), &req, &tree, &sig);
    ck_assert_int_eq(out.rc, HF_OK);
    ck_assert_str_eq(APR_ARRAY_IDX(out.events, 0, hf_event_t *)->text,
                     "{\"type\":\"profile.parsing.success\","
                     "\"profile\":{\"a\":1}}");
    ck_assert_str_eq(APR_ARRAY_IDX(out.events, 0, hf_event_t *)->id,
                     APR_ARRAY_IDX(tree.events, 0, hf_event_t *)->id);
}
END_TEST

START_TEST(custom_header_only)
{
    hf_config_t *c = config("required");
    hf_outcome_t out;
    const char *ev = "{\"type\":\"a.b.c\"}";

    c->signature_header = "X-Sig";
    apr_table_set(headers, "HRFLOW-SIGNATURE", sign_body(ev));
    ck_assert_int_eq(receive(c, "POST", "application/json", ev, &out),
                     HF_E_UNSIGNED);
    apr_table_set(headers, "x-sig", sign_body(ev));
    ck_assert_int_eq(receive(c, "POST", "application/json", ev, &out), HF_OK);
}
END_TEST

START_TEST(size_and_config_errors)
{
    hf_config_t *c = config("required");
    hf_request_t req = {"POST", "application/json", "", 0, 1, lookup, NULL};
    hf_outcome_t out;

    req.header_ctx = headers;
    hf_receive(pool, c, &req, &out);
    ck_assert_int_eq(out.rc, HF_E_TOO_LARGE);
    ck_assert_int_eq(hf_receive_rc_http_status(out.rc), 413);
    c->secrets = NULL;
    req.body_too_large = 0;
    hf_receive(pool, c, &req, &out);
    ck_assert_int_eq(out.rc, HF_E_CONFIG);
    ck_assert_int_eq(hf_receive_rc_http_status(out.rc), 500);
}
END_TEST

START_TEST(deliver_counts_and_stops_at_failure)
{
    hf_config_t *c = config("off");
    hf_config_ctx_t ctx = {pool, NULL};
    char *ok[] = {"job.*", "/bin/true", NULL};
    char *bad[] = {"profile.*", "/bin/false", NULL};
    hf_outcome_t out;

    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowHandler"), 2, ok);
    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowHandler"), 2, bad);
    receive(c, "POST", "application/json",
            "[{\"type\":\"job.a.b\"},{\"type\":\"x.y.z\"},"
            "{\"type\":\"profile.a.b\"},{\"type\":\"job.c.d\"}]",
            &out);
    ck_assert_int_eq(out.rc, HF_OK);
    hf_deliver(pool, c, &out, NULL);
    ck_assert_int_eq(out.rc, HF_E_HANDLER);
    ck_assert_int_eq(out.handled, 1);
    ck_assert_int_eq(out.ignored, 1);
    ck_assert_int_eq(out.failed, 1);
    ck_assert_str_eq(hf_receive_response_body(pool, &out),
                     "{\"status\":\"error\",\"error\":\"handler_failed\","
                     "\"events\":4,\"handled\":1,\"ignored\":1,\"failed\":1,"
                     "\"not_run\":1}\n");
}
END_TEST

static int always_gone(void *ctx)
{
    return ++*(int *)ctx > 1;   /* there for the first event, then gone */
}

START_TEST(deliver_stops_for_a_client_gone)
{
    hf_config_t *c = config("off");
    hf_config_ctx_t ctx = {pool, NULL};
    char *ok[] = {"*", "/bin/true", NULL};
    hf_outcome_t out;
    int asked = 0;

    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowHandler"), 2, ok);
    receive(c, "POST", "application/json",
            "[{\"type\":\"job.a.b\"},{\"type\":\"job.a.c\"},"
            "{\"type\":\"job.a.d\"}]",
            &out);
    hf_deliver_watched(pool, c, &out, NULL, always_gone, &asked);
    ck_assert_int_eq(out.rc, HF_E_HANDLER);
    ck_assert_int_eq(hf_receive_rc_http_status(out.rc), 500);
    ck_assert_int_eq(out.handled, 1);
    ck_assert_int_eq(out.not_run, 2);
    ck_assert_str_eq(out.error, "client_gone");
}
END_TEST

/* HrflowTimeout 1 bounds the batch, not each handler: the first handler is
 * stopped at the budget and the two after it never start. */
START_TEST(deliver_batch_has_one_time_budget)
{
    hf_config_t *c = config("off");
    hf_config_ctx_t ctx = {pool, NULL};
    char *slow[] = {"*", "/bin/sleep", "30", NULL};
    char *one[] = {"1", NULL};
    hf_outcome_t out;

    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowHandler"), 3,
                    slow);
    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowTimeout"), 1, one);
    receive(c, "POST", "application/json",
            "[{\"type\":\"job.a.b\"},{\"type\":\"job.a.c\"},"
            "{\"type\":\"job.a.d\"}]",
            &out);
    hf_deliver(pool, c, &out, NULL);
    ck_assert_int_eq(out.rc, HF_E_HANDLER);
    ck_assert_int_eq(out.failed, 1);
    ck_assert_int_eq(out.handled, 0);
    ck_assert_int_eq(out.not_run, 2);
}
END_TEST

/* Variables cost what the caps allow: none are built for an event that no
 * handler runs, except the first (its variables go to the access log). */
START_TEST(deliver_builds_variables_only_for_events_that_run)
{
    hf_config_t *c = config("off");
    hf_config_ctx_t ctx = {pool, NULL};
    char *ok[] = {"job.*", "/bin/true", NULL};
    hf_outcome_t out;
    int i;

    hf_config_apply(&ctx, c, hf_config_directive_find("HrflowHandler"), 2, ok);
    receive(c, "POST", "application/json",
            "[{\"type\":\"x.y.z\",\"a\":1},{\"type\":\"x.y.z\",\"a\":2},"
            "{\"type\":\"job.a.b\",\"a\":3},{\"type\":\"x.y.z\"}]",
            &out);
    ck_assert_int_eq(out.rc, HF_OK);
    hf_deliver(pool, c, &out, NULL);
    ck_assert_int_eq(out.rc, HF_OK);
    ck_assert_int_eq(out.handled, 1);
    ck_assert_int_eq(out.ignored, 3);
    for (i = 0; i < 4; i++) {
        const hf_event_t *ev = APR_ARRAY_IDX(out.events, i, hf_event_t *);
        if (i == 0 || i == 2)
            ck_assert_ptr_nonnull(ev->vars);
        else
            ck_assert_msg(ev->vars == NULL, "event %d has variables", i);
    }
    ck_assert_str_eq(apr_table_get(APR_ARRAY_IDX(out.events, 0,
                                                 hf_event_t *)->vars,
                                   "HRFLOW_A"), "1");
}
END_TEST

static Suite *receive_suite(void)
{
    Suite *s = suite_create("receive");
    TCase *tc = tcase_create("receive");

    tcase_add_checked_fixture(tc, setup_headers, pool_teardown);
    suite_add_tcase(s, tc);
    tcase_add_test(tc, statuses_in_order);
    tcase_add_test(tc, optional_and_off);
    tcase_add_test(tc, signed_payload_replaces_body);
    tcase_add_test(tc, signed_receive_gives_the_payload);
    tcase_add_test(tc, text_receive_builds_no_tree);
    tcase_add_test(tc, custom_header_only);
    tcase_add_test(tc, size_and_config_errors);
    tcase_add_test(tc, deliver_counts_and_stops_at_failure);
    tcase_add_test(tc, deliver_builds_variables_only_for_events_that_run);
    tcase_add_test(tc, deliver_stops_for_a_client_gone);
    tcase_add_test(tc, deliver_batch_has_one_time_budget);
    return s;
}

UNIT_MAIN(receive_suite)
