#!/usr/bin/env python3
"""fake_flickr.py - a stand-in for the Flickr REST API on loopback (stdlib only).

Answers GET /services/rest?method=flickr.photos.search&format=json&nojsoncallback=1
in the API's JSON format, paginated (per_page, page), for COUNT photos made from
the image files under --dir (sorted; names like n01440764_tench.JPEG give the
title "tench"), and serves those files under /img/.  Each photo has an id
(1000000 + i), owner, owner name, licence, date taken, tags, a description, and
geo for even i; url_l points back at this server.

Faults, each fired once per server (so a second feed run sees none):
  page 1: "stat": "fail" code 105 (service unavailable)
  page 2: HTTP 429 with Retry-After: 1 and a JSON "stat": "fail"
  page 3: a truncated (malformed) JSON body
--always-malformed P answers page P malformed every time instead.
A wrong api_key gets code 100 (Invalid API Key), never retryable.
Every API call is logged to --log as "unix_time page" lines.
The chosen port is written to --port-file once listening.
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--api-key", default="testkey")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--always-malformed", type=int, default=0)
    ap.add_argument("--no-faults", action="store_true")
    a = ap.parse_args()

    files = []
    for root, _, names in os.walk(a.dir):
        for n in names:
            if n.lower().endswith((".jpeg", ".jpg", ".png")):
                files.append(os.path.relpath(os.path.join(root, n), a.dir))
    files.sort()
    files = files[: a.count]
    if len(files) < a.count:
        sys.exit("fake_flickr: only %d images under %s" % (len(files), a.dir))
    faults = set() if a.no_faults else {1, 2, 3}
    lock = threading.Lock()

    def label(rel):
        base = os.path.splitext(os.path.basename(rel))[0]
        parts = base.split("_", 1)
        return (parts[1] if len(parts) == 2 else base).replace("_", " ")

    def photo(i, port):
        rel = files[i]
        words = label(rel)
        p = {
            "id": str(1000000 + i), "owner": "%d@N0%d" % (1000 + i % 3, i % 3), "secret": "abc",
            "server": "1", "farm": 1, "title": "%s number %d" % (words, i), "ispublic": 1,
            "isfriend": 0, "isfamily": 0, "license": str(i % 11),
            "description": {"_content": "A fleet test photo of a %s, image %d." % (words, i)},
            "datetaken": "2020-01-%02d 12:%02d:00" % (1 + i % 28, i % 60),
            "datetakengranularity": 0, "datetakenunknown": "0",
            "ownername": "Owner %d" % (i % 3),
            "tags": " ".join(["flickrtest", "p%d" % i] + words.lower().split()),
            "latitude": (48.85 if i % 2 == 0 else 0), "longitude": (2.35 if i % 2 == 0 else 0),
            "accuracy": 16 if i % 2 == 0 else 0,
            "url_l": "http://127.0.0.1:%d/img/%s" % (port, urllib.parse.quote(rel)),
            "height_l": 768, "width_l": 1024,
        }
        return p

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body, ctype="application/json", headers=()):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            if u.path.startswith("/img/"):
                rel = urllib.parse.unquote(u.path[5:])
                if rel not in files:
                    return self.reply(404, b"not found", "text/plain")
                with open(os.path.join(a.dir, rel), "rb") as f:
                    return self.reply(200, f.read(), "image/jpeg")
            if u.path != "/services/rest":
                return self.reply(404, b"not found", "text/plain")
            q = urllib.parse.parse_qs(u.query)
            get = lambda k, d="": q.get(k, [d])[0]
            page = int(get("page", "1"))
            per = int(get("per_page", "100"))
            with open(a.log, "a") as lf:
                lf.write("%.3f %d\n" % (time.time(), page))
            if get("method") != "flickr.photos.search" or get("format") != "json" or get("nojsoncallback") != "1":
                return self.reply(200, json.dumps({"stat": "fail", "code": 112, "message": "Method not found"}).encode())
            if get("api_key") != a.api_key:
                return self.reply(200, json.dumps({"stat": "fail", "code": 100, "message": "Invalid API Key (Key has invalid format)"}).encode())
            with lock:
                fault = page in faults
                faults.discard(page)
            if page == a.always_malformed or (fault and page == 3):
                return self.reply(200, b'{"photos": {"page": %d, "pages": 3, "photo": [{"id": "1' % page)
            if fault and page == 1:
                return self.reply(200, json.dumps({"stat": "fail", "code": 105, "message": "Service currently unavailable"}).encode())
            if fault and page == 2:
                return self.reply(429, json.dumps({"stat": "fail", "code": 429, "message": "Rate limit exceeded"}).encode(),
                                  headers=[("Retry-After", "1")])
            port = self.server.server_address[1]
            n = len(files)
            pages = (n + per - 1) // per
            lo = (page - 1) * per
            photos = [photo(i, port) for i in range(lo, min(n, lo + per))] if page >= 1 else []
            body = {"photos": {"page": page, "pages": pages, "perpage": per, "total": n, "photo": photos},
                    "stat": "ok"}
            self.reply(200, json.dumps(body).encode())

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
