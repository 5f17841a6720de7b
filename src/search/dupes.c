/*
 * dupes.c - union-find grouping of confirmed near-duplicate pairs (see
 * dupes.h).  Path halving and union by size; each member keeps the most
 * similar confirmed pair it is part of as its reason.
 */
#include "search/dupes.h"

#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static uint32_t find(uint32_t *parent, uint32_t x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* a is the better keeper than b */
static int keeper_before(const dupes_image *a, const dupes_image *b)
{
    if (a->pixels != b->pixels) return a->pixels > b->pixels;
    if (a->date != b->date) return a->date < b->date;
    return a->id < b->id;
}

typedef struct member_key {
    uint32_t root, idx;
} member_key;

static int member_cmp(const void *x, const void *y)
{
    const member_key *a = x, *b = y;
    if (a->root != b->root) return a->root < b->root ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

cdx_result dupes_group(const dupes_image *im, size_t n, const dupes_pair *pairs, size_t n_pairs,
                       cdx_dupes **out)
{
    *out = NULL;
    if (n > UINT32_MAX - 1) return cdx_error(CDX_ERR_TOO_LARGE, "too many images to group");
    cdx_dupes *d = calloc(1, sizeof *d);
    uint32_t *parent = malloc((n ? n : 1) * sizeof *parent);
    uint32_t *size = malloc((n ? n : 1) * sizeof *size);
    uint32_t *best = malloc((n ? n : 1) * sizeof *best);   /* best pair per image, UINT32_MAX none */
    member_key *keys = NULL;
    cdx_result r = CDX_OK;
    if (!d || !parent || !size || !best || n_pairs > UINT32_MAX) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        parent[i] = (uint32_t)i;
        size[i] = 1;
        best[i] = UINT32_MAX;
    }
    for (size_t p = 0; p < n_pairs; p++) {
        uint32_t a = pairs[p].a, b = pairs[p].b;
        if (a >= n || b >= n || a == b) continue;
        for (int s = 0; s < 2; s++) {
            uint32_t x = s ? b : a;
            if (best[x] == UINT32_MAX || pairs[p].similarity > pairs[best[x]].similarity)
                best[x] = (uint32_t)p;
        }
        uint32_t ra = find(parent, a), rb = find(parent, b);
        if (ra == rb) continue;
        if (size[ra] < size[rb]) {
            uint32_t t = ra;
            ra = rb;
            rb = t;
        }
        parent[rb] = ra;
        size[ra] += size[rb];
    }
    size_t nm = 0;
    for (size_t i = 0; i < n; i++)
        if (size[find(parent, (uint32_t)i)] > 1) nm++;
    if (!(keys = malloc((nm ? nm : 1) * sizeof *keys)) ||
        !(d->members = malloc((nm ? nm : 1) * sizeof *d->members)) ||
        !(d->groups = malloc((nm ? nm : 1) * sizeof *d->groups))) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    nm = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t root = find(parent, (uint32_t)i);
        if (size[root] > 1) keys[nm++] = (member_key){root, (uint32_t)i};
    }
    /* image indexes follow ids: sorting by (root, index) lists each
     * group's members in id order */
    qsort(keys, nm, sizeof *keys, member_cmp);
    for (size_t i = 0; i < nm;) {
        size_t j = i, k = i;
        while (j < nm && keys[j].root == keys[i].root) {
            if (keeper_before(&im[keys[j].idx], &im[keys[k].idx])) k = j;
            j++;
        }
        /* keeper first, the others in id order */
        member_key kk = keys[k];
        memmove(keys + i + 1, keys + i, (k - i) * sizeof *keys);
        keys[i] = kk;
        cdx_dupe_group *g = &d->groups[d->n_groups++];
        g->first = i;
        g->count = j - i;
        g->keeper = im[kk.idx].id;
        for (size_t m = i; m < j; m++) {
            uint32_t x = keys[m].idx;
            cdx_dupe *e = &d->members[m];
            e->id = im[x].id;
            e->keeper = m == i;
            e->via = 0;
            e->similarity = 0;
            e->distance = -1;
            if (best[x] != UINT32_MAX) {
                const dupes_pair *p = &pairs[best[x]];
                e->via = im[p->a == x ? p->b : p->a].id;
                e->similarity = p->similarity;
                e->distance = p->distance;
            }
        }
        i = j;
    }
    d->n_members = nm;
done:
    free(parent);
    free(size);
    free(best);
    free(keys);
    if (r) {
        cdx_dupes_free(d);
        return r;
    }
    *out = d;
    return CDX_OK;
}

void cdx_dupes_free(cdx_dupes *d)
{
    if (!d) return;
    free(d->groups);
    free(d->members);
    free(d);
}
