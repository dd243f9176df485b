#!/usr/bin/env python3
"""A docker-registry token server (auth.token) for the pull tests.

  pull-token-server.py PORT KEY.pem CERT.pem ISSUER SERVICE LOG

GET /token?service=S&scope=repository:NAME:ACTIONS
  Basic u:p          -> every requested action, answered as {"token": JWT}
  anonymous          -> pull on repositories not under "private/", as
                        {"access_token": JWT}
  wrong credentials  -> 401
POST /token  grant_type=refresh_token&refresh_token=e2e-identity-token&client_id=..
             &service=S&scope=..  (dockerd's OAuth2 with an identity token)
                     -> every requested action, {"access_token": JWT, ...};
                        another refresh token -> 401
JWTs are RS256 with the certificate in the x5c header (the registry's
rootcertbundle holds the same self-signed certificate).
"""
import base64
import http.server
import json
import os
import socketserver
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

PORT, KEYF, CERTF, ISSUER, SERVICE, LOGF = sys.argv[1:7]
KEY = serialization.load_pem_private_key(open(KEYF, "rb").read(), password=None)
CERT = x509.load_pem_x509_certificate(open(CERTF, "rb").read())
CERT_DER = CERT.public_bytes(serialization.Encoding.DER)
LOG = open(LOGF, "a", buffering=1)
REFRESH_TOKEN = "e2e-identity-token"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(access):
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT_DER).decode()]}
    claims = {"iss": ISSUER, "sub": "u", "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": b64u(os.urandom(12)), "access": access}
    signing = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    sig = KEY.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing + "." + b64u(sig)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        auth = self.headers.get("Authorization")
        LOG.write("TOKEN %s auth=%s\n" % (self.path, "basic" if auth else "none"))
        if u.path != "/token" or q.get("service") != [SERVICE]:
            return self.reply(400, {"details": "bad request"})
        user = None
        if auth:
            if auth != "Basic " + base64.b64encode(b"u:p").decode():
                return self.reply(401, {"details": "incorrect username or password"})
            user = "u"
        t = jwt(grant(q.get("scope", []), user))
        return self.reply(200, {"token": t, "expires_in": 300} if user else
                          {"access_token": t, "expires_in": 300})

    def do_POST(self):
        # OAuth2 as dockerd does it with an identity token (grant_type
        # refresh_token, client_id, space-separated scope).
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        LOG.write("TOKEN POST %s grant=%s client=%s auth=%s\n" % (
            self.path, ",".join(form.get("grant_type", [])), ",".join(form.get("client_id", [])),
            "basic" if self.headers.get("Authorization") else "none"))
        if self.path != "/token" or form.get("service") != [SERVICE] or not form.get("client_id"):
            return self.reply(400, {"details": "bad request"})
        if form.get("grant_type") != ["refresh_token"]:
            return self.reply(400, {"details": "unsupported grant type"})
        if form.get("refresh_token") != [REFRESH_TOKEN]:
            return self.reply(401, {"details": "invalid refresh token"})
        scopes = " ".join(form.get("scope", [])).split()
        return self.reply(200, {"access_token": jwt(grant(scopes, "u")), "expires_in": 300,
                                "refresh_token": REFRESH_TOKEN})


def grant(scopes, user):
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) != 3 or parts[0] != "repository":
            continue
        actions = parts[2].split(",")
        if user is None:
            if parts[1].startswith("private/"):
                actions = []
            else:
                actions = [a for a in actions if a == "pull"]
        access.append({"type": "repository", "name": parts[1], "actions": actions})
    return access


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


S(("127.0.0.1", int(PORT)), H).serve_forever()
