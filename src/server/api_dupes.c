/*
 * api_dupes.c - GET /api/dupes?threshold=T&max_distance=D: the library's
 * near-duplicate groups (cdx_library_dupes), and their JSON form shared
 * with the CLI.  The run is as long as a k-NN search of every image: it
 * runs on the request's thread (the job queue is for short searches).
 */
#include "api_dupes.h"

#include "api.h"
#include "json_util.h"

#include <stdio.h>
#include <string.h>

json_t *srv_dupes_json(cdx_library *lib, const cdx_dupes *d, const cdx_dupes_params *p)
{
    json_t *groups = json_array();
    json_t *o = json_pack("{s:f,s:i,s:I,s:I,s:I,s:I,s:I,s:f,s:b}", "threshold",
                          srv_round(p->threshold, 4), "max_distance", p->max_distance, "images",
                          (json_int_t)d->images, "unhashed", (json_int_t)d->unhashed, "hashed",
                          (json_int_t)d->hashed, "candidates", (json_int_t)d->candidates, "rejected",
                          (json_int_t)d->rejected, "seconds", srv_round(d->seconds, 3), "cancelled",
                          d->cancelled);
    cdx_image_record *rec = malloc(sizeof *rec);
    int ok = groups && o && rec;
    for (size_t g = 0; ok && g < d->n_groups; g++) {
        json_t *members = json_array();
        json_t *grp = json_pack("{s:I,s:o}", "keeper", (json_int_t)d->groups[g].keeper, "members", members);
        ok = grp && !json_array_append_new(groups, grp);
        for (size_t m = d->groups[g].first; ok && m < d->groups[g].first + d->groups[g].count; m++) {
            const cdx_dupe *e = &d->members[m];
            json_t *j;
            if (cdx_library_get_image(lib, e->id, rec) == CDX_OK) {
                j = srv_image_json(rec);
            } else {   /* removed since the run: the id alone */

                j = json_pack("{s:I}", "id", (json_int_t)e->id);
            }
            ok = j && !json_array_append_new(members, j);
            if (!ok) break;
            json_object_set_new(j, "keeper", json_boolean(e->keeper));
            json_object_set_new(j, "via", e->via ? json_integer(e->via) : json_null());
            json_object_set_new(j, "similarity", e->via ? json_real(srv_round(e->similarity, 4)) : json_null());
            json_object_set_new(j, "distance", e->via && e->distance >= 0 ? json_integer(e->distance)
                                                                         : json_null());
            json_object_set_new(j, "same_content", json_boolean(e->via && e->distance < 0));
        }
    }
    free(rec);
    if (!ok) {
        json_decref(groups);
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "groups", groups);
    return o;
}

void api_dupes_get(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const char *const allowed[] = {"threshold", "max_distance", NULL};
    if (srv_check_args(rq, allowed, rs)) return;
    cdx_dupes_params p = cdx_dupes_default_params();
    for (size_t i = 0; i < rq->n_args; i++) {
        double t;
        long long d;
        if (!strcmp(rq->args[i].key, "threshold")) {
            if (srv_parse_double(rq->args[i].value, 0, 1, &t) || !(t > 0)) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD,
                          "'threshold' must be a cosine similarity above 0 and at most 1 (e.g. 0.9)");
                return;
            }
            p.threshold = (float)t;
        } else {
            if (srv_parse_ll(rq->args[i].value, 0, 32, &d)) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD, "'max_distance' must be an integer between 0 and 32");
                return;
            }
            p.max_distance = (int)d;
        }
    }
    cdx_dupes *d = NULL;
    cdx_result r = cdx_library_dupes(s->lib, &p, &d);
    if (r) {
        srv_error_cdx(rs, r, SRV_E_INVALID_FIELD, "finding duplicates");
        return;
    }
    json_t *o = srv_dupes_json(s->lib, d, &p);
    cdx_dupes_free(d);
    if (!o) {
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return;
    }
    srv_json_reply(rs, 200, o);
}
