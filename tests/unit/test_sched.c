/*
 * test_sched.c - the scheduler's rules (hf_sched.c), through a store kept
 * in memory and a target that only notes what it was asked to do: per-key
 * order and exclusion, retries then failure, a failing event holding back
 * only its key, outcomes recorded later, begins refused, stores that hand
 * retries back.
 */
#include <fcntl.h>
#include <unistd.h>
#include <apr_thread_mutex.h>
#include "unit.h"
#include "hf_sched.h"

#define MAX_EVENTS 128
#define MAX_LOG 1024

/* One event of the store, and what each of its tries does. */
typedef struct {
    int id;
    const char *key;
    char order[16];
    const char *tries;          /* per try: 'o' ok, 'f' fails, 'x' final,
                                 * 'l' later */
    int begin_later;            /* begins refused before one is let */
    int bad;                    /* begin: unreadable */
    int record_later;           /* records refused before one is taken */
    int record_after;           /* and while event record_after - 1 has
                                 * not finished */
    int gone;                   /* record answers HF_SCHED_GONE */
    int attempt;                /* tries made */
    int added, released, finished;
    hf_sched_verdict_t verdict; /* last recorded */
    int recorded_attempt;
    int record_slot;
    int first_recorded_slot;
    char status[64], what[128];
} fake_event_t;

typedef struct {
    fake_event_t ev[MAX_EVENTS];
    int n;
    int retries_stay;
    int readd;                  /* retries_stay 0: events to add again */
    int to_add[MAX_EVENTS];
    apr_thread_mutex_t *lock;
    int finished;               /* events done, failed or gone */
    int running[MAX_EVENTS];    /* per key index: tries under way */
    int overlap;                /* a key ran twice at once */
    int max_running;
    int now_running;
    /* start log: event ids in the order their tries started */
    int log[MAX_LOG];
    int log_n;
    int bad_slot;
    int concurrency;
    atomic_int stop;
    int pipe[2];
    /* wait_for: a try of this id waits until one of other_id started */
    int wait_id, other_id, other_started;
    int stop_when_refused;      /* a refused record stops the scheduler */
} fake_t;

static int key_index(const char *key)
{
    return key ? key[0] - 'A' : -1;
}

static void fake_finish(fake_t *f, fake_event_t *e)
{
    e->finished = 1;
    if (++f->finished == f->n) {
        f->stop = 1;
        if (write(f->pipe[1], "", 1) < 0) {
            /* the scheduler sees stop at its next pass anyway */
        }
    }
}

static void fake_open_add(hf_sched_t *s, fake_event_t *e)
{
    e->added++;
    ck_assert_int_eq(hf_sched_add(s, e->key, e->order, 0, e), 0);
}

static int fake_open(void *ctx, hf_sched_t *s, apr_pool_t *p)
{
    fake_t *f = ctx;
    int i;

    (void)p;
    /* The even ones in order, then the odd ones in reverse: each key's
     * events must still run in their order. */
    for (i = 0; i < f->n; i += 2)
        fake_open_add(s, &f->ev[i]);
    for (i = f->n - 1 - (f->n % 2 == 0 ? 0 : 1); i > 0; i -= 2)
        fake_open_add(s, &f->ev[i]);
    ck_assert_int_eq(hf_sched_count(s), f->n);
    return 0;
}

static int fake_fd(void *ctx)
{
    return ((fake_t *)ctx)->pipe[0];
}

static apr_time_t fake_poll(void *ctx, hf_sched_t *s, int want,
                            apr_pool_t *p)
{
    fake_t *f = ctx;
    char buf[16];
    int i, left = 0;

    (void)p;
    while (read(f->pipe[0], buf, sizeof buf) > 0)
        ;
    ck_assert_int_ge(want, 0);
    ck_assert_int_le(want, f->concurrency);
    apr_thread_mutex_lock(f->lock);
    for (i = 0; i < f->readd; i++) {
        fake_event_t *e = &f->ev[f->to_add[i]];
        if (want > 0) {
            want--;
            e->added++;
            ck_assert_int_eq(hf_sched_add(s, e->key, NULL, 0, e), 0);
        }
        else
            f->to_add[left++] = f->to_add[i];
    }
    f->readd = left;
    apr_thread_mutex_unlock(f->lock);
    return 0;
}

static int fake_begin(void *ctx, void *data, int slot, apr_pool_t *p,
                      hf_sched_job_t *job, const char **error)
{
    fake_t *f = ctx;
    fake_event_t *e = data;

    if (slot < 1 || slot > f->concurrency)
        f->bad_slot = 1;
    if (e->begin_later > 0) {
        e->begin_later--;
        return HF_SCHED_LATER;
    }
    if (e->bad) {
        *error = "truncated";
        return HF_SCHED_BAD;
    }
    job->env.attempt = ++e->attempt;
    job->env.event_id = apr_psprintf(p, "e%d", e->id);
    job->env.type = "t";
    job->env.delivery_id = "d";
    job->label = apr_psprintf(p, "fake: %d", e->id);
    return HF_SCHED_OK;
}

static int fake_record(void *ctx, void *data, int slot,
                       const hf_sched_outcome_t *o, apr_pool_t *p)
{
    fake_t *f = ctx;
    fake_event_t *e = data;

    (void)p;
    if (slot < 0 || slot > f->concurrency)
        f->bad_slot = 1;
    if (!e->record_slot)
        e->first_recorded_slot = slot;
    e->record_slot = slot + 100;    /* non-zero: recorded once at least */
    if (e->record_later > 0) {
        e->record_later--;
        if (f->stop_when_refused) {
            f->stop = 1;
            if (write(f->pipe[1], "", 1) < 0) {
                /* the scheduler sees stop at its next pass anyway */
            }
        }
        return HF_SCHED_LATER;
    }
    if (e->record_after && !f->ev[e->record_after - 1].finished)
        return HF_SCHED_LATER;
    e->verdict = o->verdict;
    e->recorded_attempt = o->attempt;
    apr_cpystrn(e->status, o->status ? o->status : "", sizeof e->status);
    apr_cpystrn(e->what, o->what ? o->what : "", sizeof e->what);
    apr_thread_mutex_lock(f->lock);
    if (e->gone)
        fake_finish(f, e);
    else if (o->verdict == HF_SCHED_RETRY) {
        if (!f->retries_stay)
            f->to_add[f->readd++] = (int)(e - f->ev);
    }
    else
        fake_finish(f, e);
    apr_thread_mutex_unlock(f->lock);
    return e->gone ? HF_SCHED_GONE : HF_SCHED_OK;
}

static void fake_release(void *ctx, void *data)
{
    (void)ctx;
    ((fake_event_t *)data)->released++;
}

static void fake_close(void *ctx, apr_pool_t *p)
{
    (void)ctx;
    (void)p;
}

/* The target: notes the start, checks its key runs alone, does what the
 * event's script says. */
static void fake_run(void *ctx, int slot, apr_pool_t *p,
                     const hf_sched_job_t *job, atomic_int *stop,
                     const hf_logger_t *log, hf_target_result_t *res)
{
    fake_t *f = ctx;
    int id = atoi(job->env.event_id + 1), k;
    fake_event_t *e = &f->ev[id];
    char what;

    (void)p;
    (void)stop;
    (void)log;
    if (slot < 1 || slot > f->concurrency)
        f->bad_slot = 1;
    k = key_index(e->key);
    apr_thread_mutex_lock(f->lock);
    if (f->log_n < MAX_LOG)
        f->log[f->log_n++] = id;
    if (k >= 0 && f->running[k]++ > 0)
        f->overlap = 1;
    if (++f->now_running > f->max_running)
        f->max_running = f->now_running;
    if (id == f->other_id)
        f->other_started = 1;
    apr_thread_mutex_unlock(f->lock);
    /* Waits until another key's event has started beside it: the test
     * hangs (and Check ends it) if keys were run one at a time. */
    while (id == f->wait_id) {
        int started;
        apr_thread_mutex_lock(f->lock);
        started = f->other_started;
        apr_thread_mutex_unlock(f->lock);
        if (started)
            break;
        usleep(1000);
    }
    what = e->tries[job->env.attempt - 1 < (int)strlen(e->tries)
                        ? job->env.attempt - 1 : (int)strlen(e->tries) - 1];
    memset(res, 0, sizeof *res);
    res->ok = what == 'o';
    res->final = what == 'x';
    res->later = what == 'l';
    res->status = res->ok ? NULL : "exit 1";
    res->error = res->final ? "broken" : NULL;
    res->output = "out";
    res->output_len = 3;
    apr_thread_mutex_lock(f->lock);
    if (k >= 0)
        f->running[k]--;
    f->now_running--;
    apr_thread_mutex_unlock(f->lock);
}

static const hf_store_t fake_store = {
    "fake", 1, fake_open, fake_fd, fake_poll, fake_begin, fake_record,
    fake_release, fake_close
};
static const hf_store_t fake_store_handing_back = {
    "fake", 0, fake_open, fake_fd, fake_poll, fake_begin, fake_record,
    fake_release, fake_close
};
static const hf_target_t fake_target = {"fake", fake_run};

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    (void)msg;
}

static fake_t *fake_make(int concurrency)
{
    fake_t *f = apr_pcalloc(pool, sizeof *f);

    ck_assert_int_eq(apr_thread_mutex_create(&f->lock,
                                             APR_THREAD_MUTEX_DEFAULT, pool),
                     APR_SUCCESS);
    ck_assert_int_eq(pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC), 0);
    f->concurrency = concurrency;
    f->retries_stay = 1;
    f->wait_id = f->other_id = -1;
    return f;
}

static fake_event_t *fake_add(fake_t *f, const char *key, const char *tries)
{
    fake_event_t *e = &f->ev[f->n];

    e->id = f->n++;
    e->key = key;
    snprintf(e->order, sizeof e->order, "%06d", e->id);
    e->tries = tries;
    return e;
}

static void fake_run_all(fake_t *f, int retry)
{
    hf_logger_t log = {quiet, NULL, NULL};
    hf_sched_spec_t spec;
    int i;

    memset(&spec, 0, sizeof spec);
    spec.name = "fake";
    spec.concurrency = f->concurrency;
    spec.retry = retry;
    spec.retry_delay = 0;
    spec.log = &log;
    spec.stop = &f->stop;
    spec.wake_fd = -1;
    spec.store = f->retries_stay ? &fake_store : &fake_store_handing_back;
    spec.store_ctx = f;
    spec.target = &fake_target;
    spec.target_ctx = f;
    ck_assert_int_eq(hf_sched_run(pool, &spec), 0);
    ck_assert_int_eq(f->finished, f->n);
    ck_assert(!f->overlap);
    ck_assert(!f->bad_slot);
    ck_assert_int_le(f->max_running, f->concurrency);
    for (i = 0; i < f->n; i++)
        ck_assert_int_eq(f->ev[i].released, f->ev[i].added);
    close(f->pipe[0]);
    close(f->pipe[1]);
}

/* Index in the start log of the first start of id (-1: never). */
static int started_at(const fake_t *f, int id)
{
    int i;

    for (i = 0; i < f->log_n; i++)
        if (f->log[i] == id)
            return i;
    return -1;
}

static int last_started_at(const fake_t *f, int id)
{
    int i, at = -1;

    for (i = 0; i < f->log_n; i++)
        if (f->log[i] == id)
            at = i;
    return at;
}

/* Each key's events run one at a time, in the store's order (given here
 * in reverse), and every event runs once. */
START_TEST(keys_run_alone_and_in_order)
{
    fake_t *f = fake_make(4);
    static const char *const keys[] = {"A", "B", "C", NULL};
    int i, j;

    for (i = 0; i < 60; i++)
        fake_add(f, keys[i % 4], "o");
    fake_run_all(f, 0);
    ck_assert_int_eq(f->log_n, 60);
    for (i = 0; i < 60; i++) {
        ck_assert_int_eq(f->ev[i].verdict, HF_SCHED_DONE);
        ck_assert_int_eq(f->ev[i].recorded_attempt, 1);
        for (j = i + 4; keys[i % 4] && j < 60; j += 4)
            ck_assert_int_lt(started_at(f, i), started_at(f, j));
    }
}
END_TEST

/* Different keys run side by side: event 0 (key A) waits until event 1
 * (key B) has started beside it. */
START_TEST(different_keys_run_side_by_side)
{
    fake_t *f = fake_make(2);

    fake_add(f, "A", "o");
    fake_add(f, "B", "o");
    fake_add(f, "A", "o");
    f->wait_id = 0;
    f->other_id = 1;
    fake_run_all(f, 0);
    ck_assert_int_lt(started_at(f, 0), started_at(f, 2));
}
END_TEST

/* A failing event is retried HrflowRetry times, then failed with its last
 * status and a line for the log; the events of its key wait for it, the
 * others do not. */
START_TEST(failure_holds_back_only_its_key)
{
    fake_t *f = fake_make(2);
    int i;

    fake_add(f, "A", "ffo");        /* 0: succeeds at the third try */
    fake_add(f, "A", "o");          /* 1: after it */
    fake_add(f, "B", "f");          /* 2: fails for good after 3 tries */
    fake_add(f, "B", "o");          /* 3 */
    for (i = 0; i < 6; i++)
        fake_add(f, "C", "o");      /* 4..9: not held back */
    fake_run_all(f, 2);
    ck_assert_int_eq(f->ev[0].verdict, HF_SCHED_DONE);
    ck_assert_int_eq(f->ev[0].recorded_attempt, 3);
    ck_assert_int_gt(started_at(f, 1), last_started_at(f, 0));
    ck_assert_int_eq(f->ev[2].verdict, HF_SCHED_FAILED);
    ck_assert_int_eq(f->ev[2].recorded_attempt, 3);
    ck_assert_str_eq(f->ev[2].status, "exit 1");
    ck_assert_str_eq(f->ev[2].what, "event e2 type=t delivery=d failed 3 "
                                    "times");
    ck_assert_int_gt(started_at(f, 3), last_started_at(f, 2));
    ck_assert_int_eq(f->log_n, 3 + 1 + 3 + 1 + 6);
}
END_TEST

/* A failure no retry mends (the target says final) and an event the store
 * cannot read are failed at once, with attempt 0. */
START_TEST(final_failures_are_not_retried)
{
    fake_t *f = fake_make(1);
    fake_event_t *bad;

    fake_add(f, "A", "x");
    bad = fake_add(f, "A", "o");
    bad->bad = 1;
    fake_add(f, "A", "o");
    fake_run_all(f, 5);
    ck_assert_int_eq(f->ev[0].verdict, HF_SCHED_FAILED);
    ck_assert_int_eq(f->ev[0].recorded_attempt, 0);
    ck_assert_str_eq(f->ev[0].what, "fake: 0: broken");
    ck_assert_int_eq(f->ev[1].verdict, HF_SCHED_FAILED);
    ck_assert_int_eq(f->ev[1].recorded_attempt, 0);
    ck_assert_str_eq(f->ev[1].status, "unreadable: truncated");
    ck_assert_int_eq(started_at(f, 1), -1);     /* never run */
    ck_assert_int_eq(f->ev[2].verdict, HF_SCHED_DONE);
    ck_assert_int_eq(f->log_n, 2);
}
END_TEST

/* An outcome the store refuses is recorded again later from the main
 * thread (slot 0), and the event never runs twice.  Its try is over: the
 * next of its key runs meanwhile (here the store refuses the first
 * outcome until the second event has finished). */
START_TEST(unrecorded_outcome_is_recorded_later)
{
    fake_t *f = fake_make(2);
    fake_event_t *first = fake_add(f, "A", "f");

    fake_add(f, "A", "o");
    first->record_after = 2;
    fake_run_all(f, 0);
    ck_assert_int_eq(first->verdict, HF_SCHED_FAILED);
    ck_assert_int_ge(first->first_recorded_slot, 1);
    ck_assert_int_eq(first->record_slot, 100);     /* last: slot 0 */
    ck_assert_int_eq(started_at(f, 0), 0);
    ck_assert_int_eq(last_started_at(f, 0), 0);
    ck_assert_int_eq(started_at(f, 1), 1);
    ck_assert_int_eq(f->log_n, 2);
}
END_TEST

/* An outcome still to record when the scheduler stops gets one last try
 * (slot 0) before its event is released: a store that works again then
 * keeps it, rather than run the event once more. */
START_TEST(unrecorded_outcome_gets_a_last_try_at_the_end)
{
    fake_t *f = fake_make(2);
    fake_event_t *e = fake_add(f, "A", "o");

    e->record_later = 1;
    f->stop_when_refused = 1;
    fake_run_all(f, 0);
    ck_assert_int_eq(e->verdict, HF_SCHED_DONE);
    ck_assert_int_eq(e->record_slot, 100);         /* last: slot 0 */
    ck_assert_int_eq(f->log_n, 1);
}
END_TEST

/* A try the store cannot begin is begun again later, its key held. */
START_TEST(refused_begin_is_tried_again)
{
    fake_t *f = fake_make(2);
    fake_event_t *first = fake_add(f, "A", "o");

    fake_add(f, "A", "o");
    first->begin_later = 1;
    fake_run_all(f, 0);
    ck_assert_int_eq(first->verdict, HF_SCHED_DONE);
    ck_assert_int_eq(first->recorded_attempt, 1);
    ck_assert_int_eq(started_at(f, 0), 0);
    ck_assert_int_eq(started_at(f, 1), 1);
}
END_TEST

/* A target that cannot take an event now has it again after a backoff:
 * not a failure (no retries are left here), and its key waits. */
START_TEST(target_later_is_no_failure)
{
    fake_t *f = fake_make(2);
    fake_event_t *first = fake_add(f, "A", "lo");

    fake_add(f, "A", "o");
    fake_run_all(f, 0);
    ck_assert_int_eq(first->verdict, HF_SCHED_DONE);
    ck_assert_int_eq(first->record_slot != 0, 1);
    ck_assert_int_eq(last_started_at(f, 0), 1);
    ck_assert_int_eq(started_at(f, 1), 2);
}
END_TEST

/* An outcome that is no longer the store's (fenced) is forgotten: the next
 * of the key runs. */
START_TEST(gone_outcome_is_forgotten)
{
    fake_t *f = fake_make(1);
    fake_event_t *first = fake_add(f, "A", "f");

    fake_add(f, "A", "o");
    first->gone = 1;
    fake_run_all(f, 3);
    ck_assert_int_eq(f->log_n, 2);
    ck_assert_int_eq(f->ev[1].verdict, HF_SCHED_DONE);
}
END_TEST

/* A store that claims (retries_stay 0) gets its retries back: released
 * once recorded, added again when the store offers them, and asked for no
 * more events than there are idle workers. */
START_TEST(claiming_store_gets_retries_back)
{
    fake_t *f = fake_make(2);
    fake_event_t *e;

    f->retries_stay = 0;
    e = fake_add(f, "A", "ffo");
    fake_add(f, "B", "o");
    fake_run_all(f, 3);
    ck_assert_int_eq(e->verdict, HF_SCHED_DONE);
    ck_assert_int_eq(e->recorded_attempt, 3);
    ck_assert_int_eq(e->added, 3);
    ck_assert_int_eq(e->released, 3);
}
END_TEST

/* An event added with its outcome known never runs; the outcome is
 * recorded from the main thread, and its key waits for that. */
static int outcome_open(void *ctx, hf_sched_t *s, apr_pool_t *p)
{
    fake_t *f = ctx;
    hf_sched_outcome_t o;

    memset(&o, 0, sizeof o);
    o.verdict = HF_SCHED_DONE;
    f->ev[0].added++;
    ck_assert_int_eq(hf_sched_add_outcome(s, "A", f->ev[0].order, &f->ev[0],
                                          &o), 0);
    f->ev[1].added++;
    ck_assert_int_eq(hf_sched_add(s, "A", f->ev[1].order, 0, &f->ev[1]), 0);
    (void)p;
    return 0;
}

START_TEST(known_outcome_never_runs)
{
    fake_t *f = fake_make(2);
    hf_store_t store = fake_store;
    hf_logger_t log = {quiet, NULL, NULL};
    hf_sched_spec_t spec;

    fake_add(f, "A", "o");
    fake_add(f, "A", "o");
    store.open = outcome_open;
    memset(&spec, 0, sizeof spec);
    spec.name = "fake";
    spec.concurrency = 2;
    spec.log = &log;
    spec.stop = &f->stop;
    spec.wake_fd = -1;
    spec.store = &store;
    spec.store_ctx = f;
    spec.target = &fake_target;
    spec.target_ctx = f;
    ck_assert_int_eq(hf_sched_run(pool, &spec), 0);
    ck_assert_int_eq(f->finished, 2);
    ck_assert_int_eq(f->ev[0].record_slot, 100);
    ck_assert_int_eq(f->ev[0].verdict, HF_SCHED_DONE);
    ck_assert_int_eq(f->log_n, 1);
    ck_assert_int_eq(f->log[0], 1);
    ck_assert_int_eq(f->ev[0].released, 1);
    ck_assert_int_eq(f->ev[1].released, 1);
}
END_TEST

static Suite *sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = unit_case(s, "rules");

    tcase_set_timeout(tc, 0);   /* backoffs of a second: no clock here */

    tcase_add_test(tc, keys_run_alone_and_in_order);
    tcase_add_test(tc, different_keys_run_side_by_side);
    tcase_add_test(tc, failure_holds_back_only_its_key);
    tcase_add_test(tc, final_failures_are_not_retried);
    tcase_add_test(tc, unrecorded_outcome_is_recorded_later);
    tcase_add_test(tc, refused_begin_is_tried_again);
    tcase_add_test(tc, target_later_is_no_failure);
    tcase_add_test(tc, gone_outcome_is_forgotten);
    tcase_add_test(tc, claiming_store_gets_retries_back);
    tcase_add_test(tc, known_outcome_never_runs);
    tcase_add_test(tc, unrecorded_outcome_gets_a_last_try_at_the_end);
    return s;
}

UNIT_MAIN(sched_suite)
