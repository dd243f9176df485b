#!/usr/bin/env python3
"""A hostile (or merely picky) registry for the pull tests.

  fake-registry.py PORT IMAGE.tar MODE [LOG]

Serves the image of a `docker save` tarball (legacy format) as repository
"x" tag "t" on 127.0.0.1:PORT, gzip layers, docker schema2 manifest, and
misbehaves according to MODE:

  ok             behaves
  wrong-digest   the first layer blob's bytes do not match its digest
  truncated      every blob response stops half-way (Content-Length is full)
                 and Range is ignored: the client can never finish
  truncate-once  the first response of each blob stops half-way; Range works
  flaky          the first 2 requests of every manifest/blob answer 500
  redirect-loop  blobs redirect to themselves forever
  redirect-host  blobs redirect to http://localhost:PORT (another host for
                 the client); Basic auth is required on 127.0.0.1 and any
                 Authorization seen on localhost is logged as LEAK
  huge-manifest  the manifest is 5 MiB
  bad-diffids    the config's last diff_id is wrong (manifest and config
                 digests are consistent)
  no-range       like truncate-once, but Range is ignored (200, full body)
  bearer         registry calls need "Authorization: Bearer <token>"; tokens
                 come from GET /token?service=fake&scope=repository:x:pull
                 with Basic u:p (answered as {"token"})
  bearer-anon    the same, tokens given anonymously (as {"access_token"}); the
                 challenge offers Basic before Bearer (a client must pick Bearer)
  lazy-bearer    like bearer-anon, but GET /v2/ answers 200 without a token:
                 the challenge only comes on the repository's endpoints
  no-head        HEAD on manifests answers 405 (GET works)
  slow           layer blobs trickle (64 KiB every 50 ms), for kill tests
  slow-last      the first GET of the last layer sends all but its last byte and then
                 holds the connection for 120 s (later GETs are served at once), so a
                 client is reliably caught between two layers
  crawl          layer blobs crawl (4 KiB every 100 ms): a pull outlasts a
                 client that gives up after a second, whatever the image

Every request is logged to LOG (default stderr) as "METHOD PATH STATUS".
"""
import gzip
import hashlib
import http.server
import io
import json
import socketserver
import sys
import tarfile
import threading

PORT = int(sys.argv[1])
IMAGE = sys.argv[2]
MODE = sys.argv[3]
LOGF = open(sys.argv[4], "a", buffering=1) if len(sys.argv) > 4 else sys.stderr

BLOBS = {}
lock = threading.Lock()
hits = {}


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def load_image():
    with tarfile.open(IMAGE) as tf:
        man = json.load(tf.extractfile("manifest.json"))[0]
        config = tf.extractfile(man["Config"]).read()
        layers = [tf.extractfile(l).read() for l in man["Layers"]]
    cfg = json.loads(config)
    if MODE == "bad-diffids":
        cfg["rootfs"]["diff_ids"][-1] = "sha256:" + "0" * 64
        config = json.dumps(cfg).encode()
    descs = []
    for raw in layers:
        gz = gzip.compress(raw, mtime=0)
        d = sha(gz)
        BLOBS[d] = gz
        descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                      "size": len(gz), "digest": d})
    BLOBS[sha(config)] = config
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": len(config), "digest": sha(config)},
                "layers": descs}
    if MODE == "huge-manifest":
        manifest["annotations"] = {"pad": "x" * (5 * 1024 * 1024)}
    mb = json.dumps(manifest, indent=3).encode()
    return mb, descs


MANIFEST, LAYER_DESCS = load_image()
MANIFEST_DIGEST = sha(MANIFEST)
AUTH = "Basic dTpw"  # u:p


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def log(self, status, extra=""):
        LOGF.write("%s %s %s %s%s\n" % (self.command, self.headers.get("Host"), self.path, status,
                                        extra))

    def send(self, status, body=b"", headers=None, length=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.log(status)
        if self.command != "HEAD":
            self.wfile.write(body)

    def count(self, key):
        with lock:
            hits[key] = hits.get(key, 0) + 1
            return hits[key]

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        host = self.headers.get("Host", "")
        auth = self.headers.get("Authorization")
        if MODE == "redirect-host":
            if host.startswith("localhost"):
                if auth:
                    LOGF.write("LEAK %s %s\n" % (self.path, auth))
            elif auth != AUTH:
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}',
                                 {"WWW-Authenticate": 'Basic realm="fake"'})
        p = self.path.split("?")[0]
        if MODE == "no-head" and self.command == "HEAD" and "/manifests/" in p:
            return self.send(405, b"")
        if MODE in ("bearer", "bearer-anon", "lazy-bearer"):
            if p == "/token":
                q = dict(x.split("=", 1) for x in self.path.split("?", 1)[1].split("&"))
                LOGF.write("TOKEN %s %s\n" % (self.path, auth))
                if q.get("service") != "fake" or "scope" not in q:
                    return self.send(400, b"bad token request")
                if q.get("scope") != "repository%3Ax%3Apull" and q.get("scope") != "repository:x:pull":
                    return self.send(400, b"bad scope")
                if MODE in ("bearer-anon", "lazy-bearer"):
                    return self.send(200, json.dumps({"access_token": "tok-u"}).encode())
                if auth == AUTH:
                    return self.send(200, json.dumps({"token": "tok-u", "expires_in": 60}).encode())
                return self.send(401, b'{"details":"incorrect username or password"}')
            if auth != "Bearer tok-u" and not (MODE == "lazy-bearer" and p == "/v2/"):
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                                 {"WWW-Authenticate": ('Basic realm="fake", ' if MODE == "bearer-anon" else "")
                                  + 'Bearer realm="http://127.0.0.1:%d/token",'
                                  'service="fake",scope="repository:x:pull"' % PORT})
        if p == "/v2/":
            return self.send(200, b"{}", {"Content-Type": "application/json"})
        if MODE == "flaky" and (p.startswith("/v2/x/blobs/") or p.startswith("/v2/x/manifests/")):
            if self.count(self.command + p) <= 2:
                return self.send(500, b"boom")
        if p in ("/v2/x/manifests/t", "/v2/x/manifests/" + MANIFEST_DIGEST):
            return self.send(200, MANIFEST, {
                "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
                "Docker-Content-Digest": MANIFEST_DIGEST})
        if p.startswith("/v2/x/blobs/"):
            d = p[len("/v2/x/blobs/"):]
            if d not in BLOBS:
                return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')
            body = BLOBS[d]
            is_layer = any(l["digest"] == d for l in LAYER_DESCS)
            if MODE == "redirect-loop" and is_layer:
                n = self.count("loop")
                return self.send(307, b"", {"Location": "/v2/x/blobs/%s?n=%d" % (d, n)})
            if MODE == "redirect-host" and is_layer and not host.startswith("localhost"):
                return self.send(307, b"", {"Location": "http://localhost:%d/v2/x/blobs/%s"
                                            % (PORT, d)})
            if (MODE == "slow-last" and d == LAYER_DESCS[-1]["digest"] and self.command == "GET"
                    and self.count("slow-last") == 1):
                import time
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.log(200, " held")
                try:
                    self.wfile.write(body[:-1])
                    self.wfile.flush()
                    time.sleep(120)
                    self.wfile.write(body[-1:])
                except OSError:
                    pass
                return
            crawl = MODE == "crawl" and is_layer
            if (MODE == "slow" and is_layer or crawl) and self.command == "GET":
                step, pause = (4096, 0.1) if crawl else (65536, 0.05)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.log(200, " slow")
                import time
                for i in range(0, len(body), step):
                    try:
                        self.wfile.write(body[i:i + step])
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(pause)
                return
            if MODE == "wrong-digest" and d == LAYER_DESCS[0]["digest"]:
                body = gzip.compress(b"\0" * 10240, mtime=0)
                return self.send(200, body, {"Content-Type": "application/octet-stream"})
            rng = self.headers.get("Range")
            if rng and MODE not in ("no-range", "truncated") and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                part = body[start:]
                return self.send(206, part, {
                    "Content-Range": "bytes %d-%d/%d" % (start, len(body) - 1, len(body))})
            truncate = MODE == "truncated" or (
                MODE in ("truncate-once", "no-range") and is_layer and self.count("t" + d) == 1)
            if truncate and self.command == "GET" and len(body) > 1:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.log(200, " truncated")
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            return self.send(200, body, {"Content-Type": "application/octet-stream"})
        return self.send(404, b'{"errors":[{"code":"NOT_FOUND","message":"nope"}]}')


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


S(("127.0.0.1", PORT), H).serve_forever()
