#!/usr/bin/env python3
"""hf_test_server.py - a stand-in for the Hugging Face hub's file resolver,
for tests/e2e_model_fetch.sh.  Listens on 127.0.0.1 only.

Serves the files of --root under /<owner>/<name>/resolve/<revision>/<file>
with Range support (206, 416 with "Content-Range: bytes */N"), and behaves
per repository name like the parts of the hub that clipdex must handle:

  test/clip-tiny     normal repository (revision "main" or "v1")
  test/flaky         like clip-tiny, but the first --drop-times GETs of
                     model.safetensors send --drop-after bytes of the body
                     and then drop the connection
  test/norange       ignores Range headers (always 200 with the whole file)
  test/redirect      answers 302 to http://localhost:PORT/cdn/<file> (another
                     host name, like the hub's CDN)
  test/gated         401 for every file
  test/forbidden     403 for every file
  test/pickle        404 EntryNotFound for model.safetensors
  test/corrupt       like clip-tiny, but announces a wrong sha256 for
                     model.safetensors
  anything else      404 RepoNotFound; unknown revision: 404 RevisionNotFound

Every request is logged to --log as one line:
  <METHOD> <path> range=<Range header or -> auth=<yes|no> status=<code>
Like the hub, replies to /resolve/ for model.safetensors (an LFS file)
carry X-Linked-Etag: "<sha256>" and X-Linked-Size, also on redirects.
The chosen port is printed on stdout and written to --port-file.  The
server exits by itself after --timeout seconds.
"""
import argparse
import hashlib
import http.server
import os
import re
import socket
import sys
import threading
import urllib.parse

KNOWN = {"test/clip-tiny", "test/flaky", "test/norange", "test/redirect",
         "test/gated", "test/forbidden", "test/pickle", "test/corrupt"}
REVISIONS = {"main", "v1"}
PATH_RE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/([^/]+)$")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hf-test/1"

    def log_message(self, fmt, *args):  # quiet: our own log is below
        pass

    def log(self, status):
        with self.server.log_lock, open(self.server.args.log, "a") as f:
            f.write("%s %s range=%s auth=%s status=%d\n" % (
                self.command, self.path, self.headers.get("Range", "-"),
                "yes" if self.headers.get("Authorization") else "no", status))

    def plain(self, status, text, headers=()):
        body = text.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log(status)

    def lfs_headers(self, repo, name):
        """X-Linked-* headers of the hub's resolve replies for LFS files."""
        if name != "model.safetensors" or repo == "/cdn":
            return []
        sha, size = self.server.weights_sha, self.server.weights_size
        if repo == "test/corrupt":
            sha = "0" * 64
        return [("X-Linked-Etag", '"%s"' % sha), ("X-Linked-Size", str(size))]

    def error_404(self, code, message):
        self.plain(404, message, [("X-Error-Code", code), ("X-Error-Message", message)])

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/cdn/"):
            return self.serve_file(urllib.parse.unquote(path[5:]), "/cdn")
        m = PATH_RE.match(path)
        if not m:
            return self.error_404("EntryNotFound", "no such route")
        repo, rev, name = (urllib.parse.unquote(g) for g in m.groups())
        if repo not in KNOWN:
            return self.error_404("RepoNotFound", "Repository not found")
        if repo == "test/gated":
            return self.plain(401, "Access to model test/gated is restricted.",
                              [("X-Error-Code", "GatedRepo")])
        if repo == "test/forbidden":
            return self.plain(403, "Forbidden")
        if rev not in REVISIONS:
            return self.error_404("RevisionNotFound", "Invalid rev id: " + rev)
        if repo == "test/pickle" and name == "model.safetensors":
            return self.error_404("EntryNotFound", "Entry not found")
        if repo == "test/redirect":
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", "http://localhost:%d/cdn/%s" % (port, name))
            for k, v in self.lfs_headers(repo, name):
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return self.log(302)
        return self.serve_file(name, repo)

    def serve_file(self, name, repo):
        file = os.path.join(self.server.args.root, name)
        if "/" in name or name.startswith(".") or not os.path.isfile(file):
            return self.error_404("EntryNotFound", "Entry not found")
        with open(file, "rb") as f:
            data = f.read()
        size, start, status = len(data), 0, 200
        rng = self.headers.get("Range")
        if rng and repo != "test/norange":
            m = re.match(r"^bytes=(\d+)-(\d*)$", rng)
            if not m:
                return self.plain(400, "bad range")
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else size - 1
            if start >= size:
                return self.plain(416, "range not satisfiable",
                                  [("Content-Range", "bytes */%d" % size)] +
                                  self.lfs_headers(repo, name))
            data, status = data[start:min(end, size - 1) + 1], 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in self.lfs_headers(repo, name):
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(data) - 1, size))
        self.end_headers()
        if self.command == "HEAD":
            return self.log(status)
        if repo == "test/flaky" and name == "model.safetensors" and self.take_drop():
            self.log(status)
            self.wfile.write(data[:self.server.args.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.log(status)
        self.wfile.write(data)

    def take_drop(self):
        with self.server.log_lock:
            if self.server.drops_left > 0:
                self.server.drops_left -= 1
                return True
            return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="model directory to serve")
    ap.add_argument("--log", required=True, help="request log file")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--drop-after", type=int, default=1 << 20)
    ap.add_argument("--drop-times", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.args, srv.log_lock, srv.drops_left = args, threading.Lock(), args.drop_times
    with open(os.path.join(args.root, "model.safetensors"), "rb") as f:
        weights = f.read()
    srv.weights_sha, srv.weights_size = hashlib.sha256(weights).hexdigest(), len(weights)
    open(args.log, "w").close()
    port = srv.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    print(port, flush=True)
    # Stop by ourselves even if the test script dies without killing us.
    timer = threading.Timer(args.timeout, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
