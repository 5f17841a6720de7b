/*
 * registry.c - the model registry (cdx_registry_*): named, versioned
 * models with aliases, lineage and evaluation results, as MLflow's model
 * registry keeps them, in one SQLite file beside the model cache
 * (<cache root>/registry.db).
 *
 * Model:
 *  - a version is a model's content fingerprint (sha256 over config and
 *    weights, cdx_model_info.fingerprint): immutable, and the same files
 *    always get the same version;
 *  - each version belongs to one name (e.g. "openai/clip-vit-base-patch32"
 *    or "my-photos"); a name has any number of versions;
 *  - an alias ("production", "candidate") points a name at one of its
 *    versions and can be moved; references are NAME, NAME@ALIAS or
 *    NAME@VERSION-PREFIX (at least 8 hex digits);
 *  - lineage is a JSON object (base model, training data fingerprint,
 *    hyperparameters, clipdex version), evaluation results a list of JSON
 *    records, both stored verbatim after validation.
 *
 * Concurrency: any number of processes; SQLite transactions (WAL, a busy
 * timeout) make concurrent registrations, tags and removals safe.
 * Hostile input: names, aliases and references are validated before any
 * query; JSON must parse as an object of bounded size.
 *
 * Why SQLite and not JSON files: concurrent writers need atomic
 * read-modify-write, which SQLite (already a dependency) gives for free.
 */
#include "clipdex.h"

#include "common/error.h"
#include "common/util.h"
#include "fetch/cache.h"

#include <ctype.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define JSON_MAX_BYTES ((size_t)1 << 20)

struct cdx_registry {
    sqlite3 *db;
    char *path;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS models("
    "  version TEXT PRIMARY KEY, name TEXT NOT NULL, dir TEXT NOT NULL,"
    "  registered INTEGER NOT NULL, clipdex_version TEXT NOT NULL,"
    "  lineage TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX IF NOT EXISTS models_name ON models(name, registered);"
    "CREATE TABLE IF NOT EXISTS aliases("
    "  name TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,"
    "  PRIMARY KEY(name, alias));"
    "CREATE TABLE IF NOT EXISTS evals("
    "  id INTEGER PRIMARY KEY, version TEXT NOT NULL, recorded INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, metrics TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS evals_version ON evals(version, id);";

static cdx_result db_error(cdx_registry *g, const char *what)
{
    return cdx_error(CDX_ERR_IO, "%s: %s: %s", g->path, what, sqlite3_errmsg(g->db));
}

static cdx_result exec(cdx_registry *g, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(g->db, sql, NULL, NULL, &msg) == SQLITE_OK) return CDX_OK;
    cdx_result r = cdx_error(CDX_ERR_IO, "%s: %s", g->path, msg ? msg : "SQL error");
    sqlite3_free(msg);
    return r;
}

/* ---------------------------------------------------------------- validation */

int cdx_registry_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 128 || !isalnum((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '/') return 0;
        if (c == '/' && (s[i + 1] == '/' || s[i + 1] == '.' || s[i + 1] == '\0')) return 0;
    }
    return 1;
}

static int alias_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 32 || !islower((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!islower(c) && !isdigit(c) && c != '_' && c != '-') return 0;
    }
    return 1;
}

static int hex_prefix_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 8 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return 0;
    return 1;
}

/* A JSON object of bounded size, re-serialised compactly (NULL text = "{}").
 * *out is malloc'd. */
static cdx_result json_object_text(const char *what, const char *text, char **out)
{
    *out = NULL;
    if (!text) text = "{}";
    if (strlen(text) > JSON_MAX_BYTES)
        return cdx_error(CDX_ERR_TOO_LARGE, "%s is larger than 1 MiB", what);
    json_error_t err;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!j) return cdx_error(CDX_ERR_FORMAT, "%s: malformed JSON at line %d: %s", what, err.line, err.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return cdx_error(CDX_ERR_FORMAT, "%s must be a JSON object", what);
    }
    *out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return *out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------- open */

cdx_result cdx_registry_open(const char *path, const cdx_fetch_params *params, cdx_registry **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_open: NULL out");
    *out = NULL;
    cdx_registry *g = calloc(1, sizeof *g);
    if (!g) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = CDX_OK;
    if (path) {
        g->path = strdup(path);
        if (!g->path) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    } else {
        char *root = NULL;
        r = cdx_model_cache_root(params, &root);
        if (!r) r = cdx_cache_mkdirs(root);
        if (!r && !(g->path = cdx_path_join(root, "registry.db"))) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        free(root);
    }
    if (!r && sqlite3_open_v2(g->path, &g->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                              SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        r = cdx_error(CDX_ERR_IO, "%s: cannot open the model registry: %s", g->path,
                      g->db ? sqlite3_errmsg(g->db) : "out of memory");
    if (!r) {
        sqlite3_busy_timeout(g->db, 10000);
        r = exec(g, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    }
    if (!r) r = exec(g, schema);
    if (r) {
        cdx_registry_close(g);
        return r;
    }
    *out = g;
    return CDX_OK;
}

void cdx_registry_close(cdx_registry *g)
{
    if (!g) return;
    sqlite3_close(g->db);
    free(g->path);
    free(g);
}

/* ---------------------------------------------------------------- reads */

static void copy_col(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* Fill m (aliases too) from a row of "SELECT version, name, dir,
 * registered, clipdex_version, lineage". */
static cdx_result fill_model(cdx_registry *g, sqlite3_stmt *s, cdx_registry_model *m)
{
    memset(m, 0, sizeof *m);
    copy_col(m->version, sizeof m->version, s, 0);
    copy_col(m->name, sizeof m->name, s, 1);
    copy_col(m->dir, sizeof m->dir, s, 2);
    m->registered = sqlite3_column_int64(s, 3);
    copy_col(m->clipdex_version, sizeof m->clipdex_version, s, 4);
    copy_col(m->lineage, sizeof m->lineage, s, 5);
    sqlite3_stmt *a = NULL;
    if (sqlite3_prepare_v2(g->db, "SELECT alias FROM aliases WHERE version = ?1 ORDER BY alias", -1, &a,
                           NULL) != SQLITE_OK ||
        sqlite3_bind_text(a, 1, m->version, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(a);
        return db_error(g, "reading aliases");
    }
    size_t len = 0;
    int rc;
    while ((rc = sqlite3_step(a)) == SQLITE_ROW) {
        const char *al = (const char *)sqlite3_column_text(a, 0);
        int w = snprintf(m->aliases + len, sizeof m->aliases - len, "%s%s", len ? "," : "", al ? al : "");
        if (w < 0 || (size_t)w >= sizeof m->aliases - len) break;
        len += (size_t)w;
    }
    sqlite3_finalize(a);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(g, "reading aliases");
    return CDX_OK;
}

#define MODEL_COLS "SELECT version, name, dir, registered, clipdex_version, lineage FROM models "

cdx_result cdx_registry_resolve_dir(const char *ref, char *dir, size_t dir_cap, char *name, size_t name_cap)
{
    if (!ref || !dir || !dir_cap) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_resolve_dir: NULL argument");
    struct stat st;
    char cfg[4200];
    if ((size_t)snprintf(cfg, sizeof cfg, "%s/config.json", ref) < sizeof cfg && stat(ref, &st) == 0 &&
        S_ISDIR(st.st_mode) && stat(cfg, &st) == 0) {
        snprintf(dir, dir_cap, "%s", ref);
        return CDX_OK;
    }
    cdx_registry *g = NULL;
    cdx_registry_model *m = malloc(sizeof *m);
    cdx_result r = m ? cdx_registry_open(NULL, NULL, &g) : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) r = cdx_registry_resolve(g, ref, m);
    if (!r) {
        snprintf(dir, dir_cap, "%s", m->dir);
        if (name && name_cap) snprintf(name, name_cap, "%s", m->name);
    }
    cdx_registry_close(g);
    free(m);
    return r;
}

cdx_result cdx_registry_resolve(cdx_registry *g, const char *ref, cdx_registry_model *out)
{
    if (!g || !ref || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_resolve: NULL argument");
    char name[160];
    const char *at = strrchr(ref, '@');
    size_t nl = at ? (size_t)(at - ref) : strlen(ref);
    if (nl >= sizeof name) return cdx_error(CDX_ERR_INVALID_ARG, "model reference '%s' is too long", ref);
    memcpy(name, ref, nl);
    name[nl] = '\0';
    const char *tail = at ? at + 1 : NULL;
    sqlite3_stmt *s = NULL;
    const char *sql;
    if (!nl && tail && hex_prefix_ok(tail)) {
        sql = MODEL_COLS "WHERE version >= ?2 AND version < ?2 || 'g' ORDER BY version LIMIT 2";
    } else if (!cdx_registry_name_ok(name)) {
        return cdx_error(CDX_ERR_INVALID_ARG, "'%s' is not a model reference (NAME, NAME@ALIAS, "
                         "NAME@VERSION or @VERSION; names use letters, digits, . _ - /)", ref);
    } else if (!tail) {
        sql = MODEL_COLS "WHERE name = ?1 ORDER BY registered DESC, rowid DESC LIMIT 1";
    } else if (alias_ok(tail)) {
        sql = MODEL_COLS "WHERE version = (SELECT version FROM aliases WHERE name = ?1 AND alias = ?2)";
        /* an alias that also reads as a version prefix: the alias wins,
         * else the version */
        if (hex_prefix_ok(tail))
            sql = MODEL_COLS "WHERE version = (SELECT version FROM aliases WHERE name = ?1 AND alias = ?2) "
                  "UNION ALL SELECT * FROM (" MODEL_COLS "WHERE name = ?1 AND version >= ?2 AND "
                  "version < ?2 || 'g' AND NOT EXISTS (SELECT 1 FROM aliases WHERE name = ?1 AND alias = ?2) "
                  "ORDER BY version LIMIT 2)";
    } else if (hex_prefix_ok(tail)) {
        sql = MODEL_COLS "WHERE name = ?1 AND version >= ?2 AND version < ?2 || 'g' ORDER BY version LIMIT 2";
    } else {
        return cdx_error(CDX_ERR_INVALID_ARG, "'%s': after '@' comes an alias (lower-case letters, "
                         "digits, _ -) or at least 8 hex digits of a version", ref);
    }
    if (sqlite3_prepare_v2(g->db, sql, -1, &s, NULL) != SQLITE_OK ||
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        (tail && sqlite3_bind_text(s, 2, tail, -1, SQLITE_STATIC) != SQLITE_OK)) {
        sqlite3_finalize(s);
        return db_error(g, "resolving a model");
    }
    int rc = sqlite3_step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) {
        r = fill_model(g, s, out);
        if (!r && sqlite3_step(s) == SQLITE_ROW)
            r = cdx_error(CDX_ERR_INVALID_ARG, "'%s' matches several versions: give more hex digits", ref);
    } else if (rc == SQLITE_DONE) {
        r = cdx_error(CDX_ERR_NOT_FOUND, "no registered model '%s' (see 'clipdex model list')", ref);
    } else {
        r = db_error(g, "resolving a model");
    }
    sqlite3_finalize(s);
    return r;
}

cdx_result cdx_registry_list(cdx_registry *g, int (*fn)(const cdx_registry_model *m, void *user),
                             void *user)
{
    if (!g || !fn) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_list: NULL argument");
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(g->db, MODEL_COLS "ORDER BY name, registered, rowid", -1, &s, NULL) != SQLITE_OK)
        return db_error(g, "listing models");
    cdx_registry_model *m = malloc(sizeof *m);
    cdx_result r = m ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    int rc = SQLITE_DONE;
    while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        r = fill_model(g, s, m);
        if (!r && fn(m, user)) break;
    }
    if (!r && rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_error(g, "listing models");
    sqlite3_finalize(s);
    free(m);
    return r;
}

cdx_result cdx_registry_evals(cdx_registry *g, const char *version, char **json_out)
{
    if (!g || !version || !json_out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_evals: NULL argument");
    *json_out = NULL;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(g->db, "SELECT recorded, kind, metrics FROM evals WHERE version = ?1 ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_bind_text(s, 1, version, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(s);
        return db_error(g, "reading evaluations");
    }
    json_t *arr = json_array();
    int rc;
    while (arr && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *metrics = json_loads((const char *)sqlite3_column_text(s, 2), 0, NULL);
        json_array_append_new(arr, json_pack("{s:I,s:s,s:o}", "recorded", (json_int_t)sqlite3_column_int64(s, 0),
                                             "kind", (const char *)sqlite3_column_text(s, 1),
                                             "metrics", metrics ? metrics : json_object()));
    }
    sqlite3_finalize(s);
    *json_out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return *json_out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------- writes */

static cdx_result begin(cdx_registry *g) { return exec(g, "BEGIN IMMEDIATE"); }
static cdx_result commit(cdx_registry *g) { return exec(g, "COMMIT"); }
static void rollback(cdx_registry *g) { sqlite3_exec(g->db, "ROLLBACK", NULL, NULL, NULL); }

/* Run one statement with text parameters (NULL-terminated list). */
static cdx_result run(cdx_registry *g, const char *what, const char *sql, const char *const *args,
                      int *changes)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(g->db, sql, -1, &s, NULL) != SQLITE_OK) return db_error(g, what);
    for (int i = 0; args && args[i]; i++)
        if (sqlite3_bind_text(s, i + 1, args[i], -1, SQLITE_STATIC) != SQLITE_OK) {
            sqlite3_finalize(s);
            return db_error(g, what);
        }
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db_error(g, what);
    if (changes) *changes = sqlite3_changes(g->db);
    return CDX_OK;
}

cdx_result cdx_registry_register(cdx_registry *g, const char *model_dir, const char *name,
                                 const char *lineage_json, cdx_registry_model *out)
{
    if (!g || !model_dir || !name) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_register: NULL argument");
    if (!cdx_registry_name_ok(name))
        return cdx_error(CDX_ERR_INVALID_ARG, "'%s' is not a valid model name (1-128 letters, digits, "
                         ". _ - /, starting with a letter or digit)", name);
    char *lineage = NULL;
    cdx_result r = json_object_text("lineage", lineage_json, &lineage);
    if (r) return r;
    cdx_model *m = NULL;
    char *abs = realpath(model_dir, NULL);
    if (!abs) {
        free(lineage);
        return cdx_error(CDX_ERR_NOT_FOUND, "%s: no such model directory", model_dir);
    }
    if ((r = cdx_model_load(abs, NULL, &m))) {
        free(lineage);
        free(abs);
        return cdx_error_prefix(r, "registering a model");
    }
    cdx_model_info mi;
    cdx_model_get_info(m, &mi);
    cdx_model_free(m);
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    r = begin(g);
    if (!r) {
        cdx_registry_model old;
        char ref[80];
        snprintf(ref, sizeof ref, "@%s", mi.fingerprint);
        cdx_result e = cdx_registry_resolve(g, ref, &old);
        if (e == CDX_OK && strcmp(old.name, name)) {
            r = cdx_error(CDX_ERR_MISMATCH, "these files (version %.12s) are already registered as '%s'",
                          mi.fingerprint, old.name);
        } else if (e == CDX_OK) {   /* same files again: refresh the directory and the lineage */
            const char *args[] = {abs, lineage_json ? lineage : old.lineage, mi.fingerprint, NULL};
            r = run(g, "registering", "UPDATE models SET dir = ?1, lineage = ?2 WHERE version = ?3", args, NULL);
        } else if (e == CDX_ERR_NOT_FOUND) {
            cdx_error_clear();
            const char *args[] = {mi.fingerprint, name, abs, now, CDX_VERSION_STRING, lineage, NULL};
            r = run(g, "registering", "INSERT INTO models VALUES(?1, ?2, ?3, CAST(?4 AS INTEGER), ?5, ?6)",
                    args, NULL);
        } else {
            r = e;
        }
    }
    if (!r) r = commit(g);
    else rollback(g);
    free(lineage);
    free(abs);
    if (!r && out) {
        char ref[80];
        snprintf(ref, sizeof ref, "@%s", mi.fingerprint);
        r = cdx_registry_resolve(g, ref, out);
    }
    return r;
}

cdx_result cdx_registry_tag(cdx_registry *g, const char *ref, const char *alias)
{
    if (!g || !ref || !alias) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_tag: NULL argument");
    if (!alias_ok(alias))
        return cdx_error(CDX_ERR_INVALID_ARG, "'%s' is not a valid alias (1-32 lower-case letters, "
                         "digits, _ -, starting with a letter)", alias);
    cdx_registry_model m;
    cdx_result r = begin(g);
    if (!r) r = cdx_registry_resolve(g, ref, &m);
    const char *args[] = {m.name, alias, m.version, NULL};
    if (!r) r = run(g, "tagging", "INSERT OR REPLACE INTO aliases VALUES(?1, ?2, ?3)", args, NULL);
    if (!r) r = commit(g);
    else rollback(g);
    return r;
}

cdx_result cdx_registry_untag(cdx_registry *g, const char *name, const char *alias)
{
    if (!g || !name || !alias) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_untag: NULL argument");
    if (!cdx_registry_name_ok(name) || !alias_ok(alias))
        return cdx_error(CDX_ERR_INVALID_ARG, "bad model name or alias");
    const char *args[] = {name, alias, NULL};
    int n = 0;
    cdx_result r = run(g, "untagging", "DELETE FROM aliases WHERE name = ?1 AND alias = ?2", args, &n);
    if (!r && !n) r = cdx_error(CDX_ERR_NOT_FOUND, "model '%s' has no alias '%s'", name, alias);
    return r;
}

cdx_result cdx_registry_remove(cdx_registry *g, const char *ref)
{
    if (!g || !ref) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_remove: NULL argument");
    if (!strchr(ref, '@'))
        return cdx_error(CDX_ERR_INVALID_ARG, "name one version to remove: NAME@VERSION or NAME@ALIAS");
    cdx_registry_model m;
    cdx_result r = begin(g);
    if (!r) r = cdx_registry_resolve(g, ref, &m);
    const char *args[] = {m.version, NULL};
    if (!r) r = run(g, "removing", "DELETE FROM aliases WHERE version = ?1", args, NULL);
    if (!r) r = run(g, "removing", "DELETE FROM evals WHERE version = ?1", args, NULL);
    if (!r) r = run(g, "removing", "DELETE FROM models WHERE version = ?1", args, NULL);
    if (!r) r = commit(g);
    else rollback(g);
    return r;   /* the files themselves are the cache's (or the user's) */
}

cdx_result cdx_registry_record_eval(cdx_registry *g, const char *ref, const char *kind,
                                    const char *metrics_json)
{
    if (!g || !ref || !kind || !metrics_json)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_registry_record_eval: NULL argument");
    if (!alias_ok(kind)) return cdx_error(CDX_ERR_INVALID_ARG, "'%s' is not a valid evaluation kind", kind);
    char *metrics = NULL;
    cdx_result r = json_object_text("evaluation results", metrics_json, &metrics);
    if (r) return r;
    cdx_registry_model m;
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    r = begin(g);
    if (!r) r = cdx_registry_resolve(g, ref, &m);
    const char *args[] = {m.version, now, kind, metrics, NULL};
    if (!r) r = run(g, "recording an evaluation",
                    "INSERT INTO evals(version, recorded, kind, metrics) VALUES(?1, CAST(?2 AS INTEGER), ?3, ?4)",
                    args, NULL);
    if (!r) r = commit(g);
    else rollback(g);
    free(metrics);
    return r;
}
