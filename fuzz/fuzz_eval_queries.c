/*
 * fuzz_eval_queries.c - libFuzzer target for the evaluation query files
 * (`clipdex eval queries FILE`, src/eval/queries.c): JSONL and CSV.
 *
 * The input is parsed twice, once named "q.jsonl" (format sniffed from the
 * first byte) and once named "q.csv".  On success every query must be of a
 * known kind with its input present (or an image id), every judgment a
 * path or a positive id with a finite grade >= 0, and the set non-empty.
 * The source is included so libFuzzer instruments it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "eval/queries.c"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const ev_query_set *s)
{
    if (!s->n || !s->q || !s->name || !s->base) abort();
    for (size_t i = 0; i < s->n; i++) {
        const ev_query *q = &s->q[i];
        if (q->kind == EV_QUERY_IMAGE_ID) {
            if (q->image_id < 1) abort();
        } else if (q->kind == EV_QUERY_TEXT || q->kind == EV_QUERY_IMAGE) {
            if (!q->input) abort();
        } else {
            abort();
        }
        if (q->n_refs > EV_MAX_REFS || (q->n_refs && !q->refs)) abort();
        for (size_t j = 0; j < q->n_refs; j++) {
            const ev_ref *r = &q->refs[j];
            if (!r->path && r->id < 1) abort();
            if (!isfinite(r->grade) || r->grade < 0) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"/fuzz/q.jsonl", "/fuzz/q.csv"};
    for (int i = 0; i < 2; i++) {
        ev_query_set s;
        if (ev_queries_parse(names[i], (const char *)data, size, &s) == CDX_OK) {
            check(&s);
            ev_query_set_free(&s);
        } else if (s.q || s.n) {
            abort();   /* a failure leaves the set empty */
        }
    }
    return 0;
}
