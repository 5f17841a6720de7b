/*
 * api_reindex.c - /api/reindex: a writable server moves its own library to
 * another model (docs/models.md "Reindex with a writable server").
 *
 * The server holds the library's writer lock, so it runs the reindex
 * itself (cdx_library_reindex_handle) on one background thread: the new
 * vector set is embedded while searches and uploads go on against the old
 * one, then the handle switches in one catalog transaction and new queries
 * pin the new model.  `clipdex reindex` finds a running server through
 * DIR/serve.json and asks it here.
 *
 *   POST {"model": DIR|NAME[@ALIAS], "name"?, "drop_missing"?, "batch"?}
 *        -> 202, the job starts (409 while one runs)
 *   POST {"rollback": true, "force"?} / {"drop_previous": true}
 *        -> 200 when done (short: no embedding)
 *   GET  -> the job's state: idle | running | switched | failed
 *
 * Invariants: at most one job; its state is read and written under mu;
 * srv_reindex_stop() cancels it and joins the thread before the library
 * is closed.  Workload: a few calls per model release.
 */
#include "api_reindex.h"

#include "json_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_reindex {
    pthread_mutex_t mu;
    pthread_t thread;
    int started;             /* a thread exists (joined by the next start or stop) */
    int running;
    char state[16];
    char model[4200], name[160], error[1024];
    uint64_t done, total;
    cdx_reindex_params p;
    cdx_reindex_report rep;
    cdx_cancel_flag cancel;
    cdx_library *lib;
};

srv_reindex *srv_reindex_new(cdx_library *lib)
{
    srv_reindex *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    pthread_mutex_init(&x->mu, NULL);
    snprintf(x->state, sizeof x->state, "idle");
    x->lib = lib;
    return x;
}

void srv_reindex_stop(srv_reindex *x)
{
    if (!x) return;
    atomic_store(&x->cancel, 1);
    if (x->started) pthread_join(x->thread, NULL);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

static void progress(void *user, uint64_t done, uint64_t total)
{
    srv_reindex *x = user;
    pthread_mutex_lock(&x->mu);
    x->done = done;
    x->total = total;
    pthread_mutex_unlock(&x->mu);
}

static void *run(void *arg)
{
    srv_reindex *x = arg;
    cdx_reindex_report rep;
    cdx_result r = cdx_library_reindex_handle(x->lib, &x->p, &rep);
    pthread_mutex_lock(&x->mu);
    x->rep = rep;
    x->running = 0;
    snprintf(x->state, sizeof x->state, "%s", r ? "failed" : rep.switched ? "switched" : "embedded");
    snprintf(x->error, sizeof x->error, "%s", r ? cdx_last_error() : "");
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* A model directory as given, else a registry reference (its name taken
 * when the request gave none).  0 ok. */
static int resolve(const char *ref, char *dir, size_t dir_cap, char *name, size_t name_cap,
                   srv_response *rs)
{
    if (cdx_registry_resolve_dir(ref, dir, dir_cap, *name ? NULL : name, *name ? 0 : name_cap) == CDX_OK)
        return 0;
    srv_error(rs, 400, SRV_E_INVALID_FIELD, "'model' is neither a model directory nor a registered "
              "model: %s", cdx_last_error());
    return -1;
}

static json_t *state_json(srv_reindex *x)
{
    pthread_mutex_lock(&x->mu);
    json_t *o = json_pack("{s:s,s:I,s:I,s:o,s:o}", "state", x->state, "done", (json_int_t)x->done,
                          "total", (json_int_t)x->total, "model", srv_json_string_lossy(x->model),
                          "name", srv_json_string_lossy(x->name));
    if (o && !x->running && strcmp(x->state, "idle")) {
        json_object_set_new(o, "embedded", json_integer((json_int_t)x->rep.embedded));
        json_object_set_new(o, "resumed", json_integer((json_int_t)x->rep.resumed));
        json_object_set_new(o, "contents", json_integer((json_int_t)x->rep.contents));
        json_object_set_new(o, "seconds", json_real(x->rep.seconds));
        if (*x->error) json_object_set_new(o, "error", srv_json_string_lossy(x->error));
    }
    pthread_mutex_unlock(&x->mu);
    return o;
}

void api_reindex_get(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const char *const none[] = {NULL};
    if (srv_check_args(rq, none, rs)) return;
    if (!s->reindex) {
        srv_error(rs, 403, SRV_E_FORBIDDEN, "the server is read-only: reindex with the clipdex command");
        return;
    }
    srv_json_reply(rs, 200, state_json(s->reindex));
}

static int get_bool(json_t *o, const char *key, int *out, srv_response *rs)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "'%s' must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

/* rollback / drop_previous: short, answered when done. */
static void run_short(srv_ctx *s, int rollback, int force, srv_response *rs)
{
    srv_reindex *x = s->reindex;
    pthread_mutex_lock(&x->mu);
    int busy = x->running;
    pthread_mutex_unlock(&x->mu);
    if (busy) {
        srv_error(rs, 409, SRV_E_BAD_REQUEST, "a reindex is running (GET /api/reindex)");
        return;
    }
    uint64_t removed = 0;
    cdx_result r = rollback ? cdx_library_rollback_handle(s->lib, force, &removed)
                            : cdx_library_drop_previous_handle(s->lib);
    if (r) {
        int st = r == CDX_ERR_NOT_FOUND ? 404 : r == CDX_ERR_MISMATCH || r == CDX_ERR_IO ? 409 : 0;
        if (st) srv_error(rs, st, st == 404 ? SRV_E_NOT_FOUND : SRV_E_BAD_REQUEST, "%s", cdx_last_error());
        else srv_error_cdx(rs, r, SRV_E_INVALID_FIELD, rollback ? "rollback" : "drop previous");
        return;
    }
    cdx_library_info info;
    if (cdx_library_get_info(s->lib, &info)) info.model_fingerprint[0] = 0;
    srv_json_reply(rs, 200, rollback ? json_pack("{s:b,s:I,s:s}", "rolled_back", 1, "removed",
                                                 (json_int_t)removed, "model_fingerprint", info.model_fingerprint)
                                     : json_pack("{s:b}", "dropped", 1));
}

void api_reindex_post(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const char *const fields[] = {"model", "name", "drop_missing", "batch", "rollback", "force",
                                         "drop_previous", NULL};
    srv_reindex *x = s->reindex;
    if (!x) {
        srv_error(rs, 403, SRV_E_FORBIDDEN, "the server is read-only: reindex with the clipdex command");
        return;
    }
    json_t *o;
    if (srv_parse_body_object(rq, rs, &o)) return;
    const char *model = NULL, *name = NULL;
    int rollback = 0, force = 0, drop_prev = 0, drop_missing = 0;
    long long batch = 16;
    if (srv_check_fields(o, fields, "body", rs) || srv_get_string(o, "model", &model, rs) < 0 ||
        srv_get_string(o, "name", &name, rs) < 0 || get_bool(o, "rollback", &rollback, rs) < 0 ||
        get_bool(o, "force", &force, rs) < 0 || get_bool(o, "drop_previous", &drop_prev, rs) < 0 ||
        get_bool(o, "drop_missing", &drop_missing, rs) < 0 || srv_get_int(o, "batch", 1, 256, &batch, rs) < 0)
        goto out;
    if (rollback + drop_prev + (model != NULL) != 1) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "give exactly one of 'model', 'rollback', 'drop_previous'");
        goto out;
    }
    if (force && !rollback) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "'force' goes with 'rollback'");
        goto out;
    }
    if (name && *name && !cdx_registry_name_ok(name)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "'name' is not a model name");
        goto out;
    }
    if (!model) {
        run_short(s, rollback, force, rs);
        goto out;
    }
    char dir[4096], nm[160];
    snprintf(nm, sizeof nm, "%s", name ? name : "");
    if (strlen(model) >= sizeof dir || resolve(model, dir, sizeof dir, nm, sizeof nm, rs)) {
        if (!rs->status) srv_error(rs, 400, SRV_E_INVALID_FIELD, "'model' is too long");
        goto out;
    }
    pthread_mutex_lock(&x->mu);
    if (x->running) {
        pthread_mutex_unlock(&x->mu);
        srv_error(rs, 409, SRV_E_BAD_REQUEST, "a reindex is already running (GET /api/reindex)");
        goto out;
    }
    if (x->started) pthread_join(x->thread, NULL);   /* the previous job's thread has ended */
    x->started = 0;
    snprintf(x->model, sizeof x->model, "%s", dir);
    snprintf(x->name, sizeof x->name, "%s", nm);
    snprintf(x->state, sizeof x->state, "running");
    x->error[0] = 0;
    x->done = x->total = 0;
    memset(&x->rep, 0, sizeof x->rep);
    x->p = cdx_reindex_default_params();
    x->p.model_dir = x->model;
    x->p.model_name = *x->name ? x->name : NULL;
    x->p.drop_missing = drop_missing;
    x->p.batch_size = (int)batch;
    x->p.n_threads = s->cfg.threads;
    x->p.progress = progress;
    x->p.user = x;
    x->p.cancel = &x->cancel;
    x->running = 1;
    if (pthread_create(&x->thread, NULL, run, x) != 0) {
        x->running = 0;
        snprintf(x->state, sizeof x->state, "failed");
        snprintf(x->error, sizeof x->error, "cannot start a thread");
        pthread_mutex_unlock(&x->mu);
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "cannot start a thread");
        goto out;
    }
    x->started = 1;
    pthread_mutex_unlock(&x->mu);
    srv_json_reply(rs, 202, state_json(x));
out:
    json_decref(o);
}
