// ann_hnswlib.cpp - hnswlib (Debian libhnswlib-dev, header-only) on the data
// ann_bench wrote to DIR (shape.u32, base.f32, queries.f32, gt.u32).
// ann_bench compiles it with g++ -O3 -march=native -fopenmp at bench time.
// Prints, per ef: recall@10, p50/p99 ms of one query at a time (hnswlib
// searches one query on one thread), queries/s with --threads queries in
// flight, resident bytes per image (RSS growth while building) and build
// time (parallel insertion on --threads threads), in ann_bench's format.
// Large graphs take long to build: --save FILE writes the graph (and its
// build time and bytes per image to FILE.meta) and --build-only stops
// there; --load FILE reads it back for a query sweep (--M/--efc only name
// the method then; the file knows its own).  --ef takes any list, e.g.
// 64,128,...,4096, to sweep until recall@10 reaches a target.
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

static double now_s()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static std::vector<char> slurp(const std::string &path)
{
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) { std::fprintf(stderr, "ann_hnswlib: cannot open %s\n", path.c_str()); std::exit(1); }
    std::fseek(f, 0, SEEK_END);
    long n = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    std::vector<char> v((size_t)n);
    if (std::fread(v.data(), 1, v.size(), f) != v.size()) { std::fprintf(stderr, "short read\n"); std::exit(1); }
    std::fclose(f);
    return v;
}

static long rss_bytes()
{
    long pages = 0, rss = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (f && std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    if (f) std::fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

int main(int argc, char **argv)
{
    std::string dir = "/tmp/clipdex-ann-bench", efs = "16,32,64,128,256", save, load;
    int threads = 2, M = 16, efc = 100;
    bool json = false, build_only = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--dir" && i + 1 < argc) dir = argv[++i];
        else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--ef" && i + 1 < argc) efs = argv[++i];
        else if (a == "--M" && i + 1 < argc) M = std::atoi(argv[++i]);
        else if (a == "--efc" && i + 1 < argc) efc = std::atoi(argv[++i]);
        else if (a == "--json") json = true;
        else if (a == "--save" && i + 1 < argc) save = argv[++i];
        else if (a == "--load" && i + 1 < argc) load = argv[++i];
        else if (a == "--build-only") build_only = true;
        else { std::fprintf(stderr, "ann_hnswlib: unknown argument %s\n", a.c_str()); return 2; }
    }
    auto shape = slurp(dir + "/shape.u32");
    uint32_t hdr[3];
    std::memcpy(hdr, shape.data(), sizeof hdr);
    size_t n = hdr[0], dim = hdr[1], nq = hdr[2];
    auto base = slurp(dir + "/base.f32"), qs = slurp(dir + "/queries.f32"), gtb = slurp(dir + "/gt.u32");
    const float *xb = (const float *)base.data(), *xq = (const float *)qs.data();
    const uint32_t *gt = (const uint32_t *)gtb.data();

    hnswlib::InnerProductSpace space(dim);
    hnswlib::HierarchicalNSW<float> *ix;
    double build = 0, bytes = 0;
    long rss0 = rss_bytes();
    if (!load.empty()) {
        ix = new hnswlib::HierarchicalNSW<float>(&space, load);
        bytes = (double)(rss_bytes() - rss0) / n;   /* the graph as loaded */
        FILE *m = std::fopen((load + ".meta").c_str(), "r");
        double b2 = 0;
        if (m && std::fscanf(m, "%lf %lf %d %d", &build, &b2, &M, &efc) != 4) build = 0;
        if (m) std::fclose(m);
        if (ix->cur_element_count != n) { std::fprintf(stderr, "ann_hnswlib: %s holds %zu vectors, not %zu\n", load.c_str(), (size_t)ix->cur_element_count, n); return 1; }
    } else {
        double t0 = now_s();
        ix = new hnswlib::HierarchicalNSW<float>(&space, n, M, efc);
        std::vector<std::thread> pool;
        std::atomic<size_t> done{0};
        for (int t = 0; t < threads; t++)
            pool.emplace_back([&, t] {
                for (size_t i = t; i < n; i += threads) {
                    ix->addPoint(xb + i * dim, i);
                    size_t d = ++done;
                    if (d % 100000 == 0)
                        std::fprintf(stderr, "ann_hnswlib: %zu of %zu inserted, %.0f s\n", d, n, now_s() - t0);
                }
            });
        for (auto &th : pool) th.join();
        build = now_s() - t0;
        bytes = (double)(rss_bytes() - rss0) / n;
        if (!save.empty()) {
            ix->saveIndex(save);
            FILE *m = std::fopen((save + ".meta").c_str(), "w");
            if (m) { std::fprintf(m, "%.2f %.0f %d %d\n", build, bytes, M, efc); std::fclose(m); }
            std::fprintf(stderr, "ann_hnswlib: graph saved to %s (built in %.1f s)\n", save.c_str(), build);
        }
        if (build_only) { delete ix; return 0; }
    }
    hnswlib::HierarchicalNSW<float> &index = *ix;

    size_t pos = 0;
    while (pos < efs.size()) {
        size_t e = efs.find(',', pos);
        int ef = std::atoi(efs.substr(pos, e == std::string::npos ? std::string::npos : e - pos).c_str());
        pos = e == std::string::npos ? efs.size() : e + 1;
        if (ef < 1) continue;
        index.setEf(ef);
        std::vector<double> lat;
        size_t lq = std::min<size_t>(nq, 200);
        for (size_t q = 0; q < lq; q++) {
            double s = now_s();
            index.searchKnn(xq + q * dim, 10);
            lat.push_back((now_s() - s) * 1e3);
        }
        std::sort(lat.begin(), lat.end());
        std::vector<size_t> hits(threads, 0);
        double s = now_s();
        std::vector<std::thread> w;
        for (int t = 0; t < threads; t++)
            w.emplace_back([&, t] {
                for (size_t q = t; q < nq; q += threads) {
                    auto res = index.searchKnn(xq + q * dim, 10);
                    while (!res.empty()) {
                        size_t id = res.top().second;
                        res.pop();
                        for (int j = 0; j < 10; j++) if (gt[q * 10 + j] == id) hits[t]++;
                    }
                }
            });
        for (auto &th : w) th.join();
        double qps = nq / (now_s() - s);
        size_t h = 0;
        for (auto x : hits) h += x;
        double rec = (double)h / (nq * 10);
        char knob[64];
        std::snprintf(knob, sizeof knob, "ef=%d", ef);
        char method[64];
        std::snprintf(method, sizeof method, "hnswlib-m%d-efc%d", M, efc);
        if (json)
            std::printf("{\"method\": \"%s\", \"knob\": \"%s\", \"n\": %zu, \"dim\": %zu, \"recall10\": %.4f, "
                        "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"qps\": %.1f, \"bytes_per_image\": %.0f, "
                        "\"build_s\": %.2f}\n", method, knob, n, dim, rec, lat[lat.size() / 2],
                        lat[(size_t)(lat.size() * 0.99)], qps, bytes, build);
        else
            std::printf("%-26s %-14s recall@10 %.4f  p50 %7.3f ms  p99 %7.3f ms  %8.1f q/s  %6.0f B/img  build %.1f s\n",
                        method, knob, rec, lat[lat.size() / 2], lat[(size_t)(lat.size() * 0.99)], qps, bytes, build);
        std::fflush(stdout);
    }
    delete ix;
    return 0;
}
