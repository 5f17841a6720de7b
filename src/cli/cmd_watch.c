/*
 * cmd_watch.c - `clipdex index --watch DIR...`: index the folders, then keep
 * the library in step with them (cdx_library_watch: new, changed, moved and
 * deleted files, debounced; docs/fleet.md "Watching folders without a
 * broker") until SIGINT/SIGTERM.  SIGHUP asks for a full rescan.
 *
 * Output: one line per pass ("start: 12 added, ..."), with --json one JSON
 * line per file event (as `index --json`) and per pass
 * ({"event": "pass", "reason", "full", "paths", counts}), then a summary.
 * Exit status: 0 stopped by a signal, 1 error.
 */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static cdx_cancel_flag g_rescan;

static void on_hup(int sig)
{
    (void)sig;
    atomic_store(&g_rescan, 1);
}

typedef struct watch_ui {
    int json;
    cdx_library *lib;
    cdx_fleet *fleet;        /* an owner's replicas: opened on the first change */
} watch_ui;

static void on_pass(void *user, const cdx_watch_pass *ps)
{
    watch_ui *u = user;
    const cdx_index_stats *s = ps->stats;
    cli_publish_outbox(u->lib, &u->fleet);   /* the pass's changes (owners only) */
    if (u->json) {
        printf("{\"event\": \"pass\", \"reason\": \"%s\", \"full\": %s, \"paths\": %llu, \"added\": %llu, "
               "\"unchanged\": %llu, \"moved\": %llu, \"duplicates\": %llu, \"removed\": %llu, "
               "\"failed\": %llu, \"skipped\": %llu, \"seconds\": %.3f}\n",
               ps->reason, ps->full ? "true" : "false", (unsigned long long)ps->paths,
               (unsigned long long)s->added, (unsigned long long)s->unchanged, (unsigned long long)s->moved,
               (unsigned long long)s->duplicates, (unsigned long long)s->removed, (unsigned long long)s->failed,
               (unsigned long long)s->skipped, s->seconds);
    } else {
        printf("%s: %llu added, %llu unchanged, %llu moved, %llu duplicates, %llu removed, %llu failed\n",
               ps->reason, (unsigned long long)s->added, (unsigned long long)s->unchanged,
               (unsigned long long)s->moved, (unsigned long long)s->duplicates, (unsigned long long)s->removed,
               (unsigned long long)s->failed);
    }
    fflush(stdout);
}

int cli_index_watch(const char *lib_dir, const char *model, int threads, const char *const *dirs, int n,
                    const cdx_index_params *ip, int json)
{
    if (n < 1) return cli_usage_error("index", "--watch needs at least one folder");
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = model;
    lp.create = model != NULL;
    lp.writable = 1;
    lp.n_threads = threads;
    cdx_library *lib;
    if (cli_open_library(lib_dir, &lp, &lib)) return 1;
    cdx_watch_params wp = cdx_watch_default_params();
    wp.index = *ip;
    wp.pass = on_pass;
    watch_ui u = {json, lib, NULL};
    wp.user = &u;
    wp.cancel = cli_cancel_on_signals();
    wp.rescan = &g_rescan;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    cdx_watch_stats st;
    cdx_result r = cdx_library_watch(lib, dirs, n, &wp, &st);
    cli_publish_outbox(lib, &u.fleet);
    cdx_fleet_close(u.fleet);
    cdx_library_close(lib);
    if (r) return cli_fail("index --watch", r);
    if (json)
        printf("{\"event\": \"summary\", \"passes\": %llu, \"full_passes\": %llu, \"overflows\": %llu, "
               "\"added\": %llu, \"moved\": %llu, \"duplicates\": %llu, \"removed\": %llu, \"failed\": %llu}\n",
               (unsigned long long)st.passes, (unsigned long long)st.full_passes, (unsigned long long)st.overflows,
               (unsigned long long)st.added, (unsigned long long)st.moved, (unsigned long long)st.duplicates,
               (unsigned long long)st.removed, (unsigned long long)st.failed);
    else
        printf("stopped after %llu passes: %llu added, %llu moved, %llu removed, %llu failed\n",
               (unsigned long long)st.passes, (unsigned long long)st.added, (unsigned long long)st.moved,
               (unsigned long long)st.removed, (unsigned long long)st.failed);
    return 0;
}
