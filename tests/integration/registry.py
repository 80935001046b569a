"""Registries for the integration tests, all on 127.0.0.1 and all made at test time.

- `plain_registry`: the Distribution registry (docker-registry 2.8) over plain HTTP, no auth.
- `tls_registry`: the same over HTTPS with a CA made by `openssl` for this run, and htpasswd (bcrypt)
  basic auth. `reg.cert_dir` is a directory laid out like /etc/containers/certs.d:
  `reg.cert_dir / reg.host / "ca.crt"`; pass it as `--cert-dir`.
- `token_registry`: plain HTTP with `auth.token`; `reg.token_server` is a token server written here
  (RS256 JWTs, x5c header). Policy: anyone may pull repositories under "public/"; the user may pull
  and push everywhere. Wrong credentials get 401 from the token server.
- `fault_proxy`: a function-scoped factory of `FaultProxy`, an HTTP proxy on 127.0.0.1 in front of a
  registry that can cut a blob download once, corrupt blob bodies, or answer 429 once. The client only
  sees 127.0.0.1:PORT, so plain HTTP applies.

Each registry object has `host` ("127.0.0.1:PORT"), `url`, `user`/`password` (None without auth),
`ref(name)`, `skopeo_src()`/`skopeo_dest()` (the flags skopeo needs for it), `push_layout()`,
`curl()` (an independent HTTP client, token dance included) and `manifest()`.

Import the fixtures into a test module: `from registry import plain_registry, ...`.
Nothing here downloads anything, nothing listens on anything but 127.0.0.1.
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX,
                             "application/vnd.docker.distribution.manifest.v2+json",
                             "application/vnd.docker.distribution.manifest.list.v2+json"])


def _need(tool: str, package: str):
    if shutil.which(tool) is None and not os.access(tool, os.X_OK):
        pytest.fail(f"{tool} is not installed (Debian package {package}); run `scripts/setup test`")


def _run(cmd, **kw):
    kw.setdefault("capture_output", True)
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else proc.stdout
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")
    return proc


# ---------------------------------------------------------------------------------------------
# Key material
# ---------------------------------------------------------------------------------------------

def make_ca(directory: Path, name: str = "ocibuild test CA"):
    """A CA key and self-signed cert (EC P-256). Returns (key, cert) paths."""
    _need("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "ca.key", directory / "ca.crt"
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key, "-out", cert, "-days", "7", "-subj", f"/CN={name}",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return key, cert


def make_server_cert(directory: Path, ca_key: Path, ca_cert: Path):
    """A server key and cert for 127.0.0.1 (SAN IP:127.0.0.1, DNS:localhost) signed by the CA."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"])
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
          "-out", cert, "-days", "7", "-extfile", ext])
    return key, cert


def make_htpasswd(path: Path, user: str, password: str):
    """bcrypt entry (the only kind distribution accepts); the password goes through stdin."""
    _need("htpasswd", "apache2-utils")
    proc = _run(["htpasswd", "-niB", user], input=(password + "\n").encode())
    path.write_bytes(proc.stdout)
    return path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------
# Token server
# ---------------------------------------------------------------------------------------------

class TokenServer:
    """A Docker token-auth server (distribution docs/spec/auth/token.md) on 127.0.0.1.

    GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...][&account=U], optional Basic auth.
    Bad credentials → 401. Grants: anonymous gets `pull` on names under "public/"; `user` gets
    pull and push everywhere. Tokens are RS256 JWTs signed with a key made here, the signing cert in
    the "x5c" header; the registry trusts that cert through `rootcertbundle`.
    Every request is appended to `self.requests` as {"user", "scopes", "granted", "status", "service"}.
    """

    def __init__(self, directory: Path, user: str, password: str, service: str, issuer: str):
        _need("openssl", "openssl")
        directory.mkdir(parents=True, exist_ok=True)
        self.user, self.password, self.service, self.issuer = user, password, service, issuer
        self.key, self.cert = directory / "token.key", directory / "token.crt"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.cert,
              "-days", "7", "-subj", "/CN=ocibuild test token issuer",
              "-addext", "keyUsage=critical,digitalSignature,keyCertSign"])
        der = _run(["openssl", "x509", "-in", self.cert, "-outform", "DER"]).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self)

            def do_POST(self):  # OAuth2 form POST is not offered: clients must fall back to GET
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = _run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode()).stdout
        return signing_input + "." + b64url(sig)

    def grant(self, user, scope: str):
        """scope "repository:NAME:a,b" → the access entry granted (or None)."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        allowed = {"pull", "push"} if user else ({"pull"} if name.startswith("public/") else set())
        return {"type": "repository", "name": name, "actions": [a for a in wanted if a in allowed]}

    def _handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        user = None
        status = 200
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                u, p = "", None
            if u == self.user and p == self.password:
                user = u
            else:
                status = 401
        if url.path != "/token":
            status = 404
        scopes = query.get("scope", [])
        granted = [g for g in (self.grant(user, s) for s in scopes) if g is not None]
        with self._lock:
            self.requests.append({"user": user, "scopes": scopes, "granted": granted, "status": status,
                                  "service": query.get("service", [None])[0], "basic": auth.startswith("Basic ")})
        if status != 200:
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("WWW-Authenticate", 'Basic realm="ocibuild test token server"')
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": granted}
        token = self.sign(claims)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

class Registry:
    """One docker-registry process on 127.0.0.1 with a fresh port and storage under `directory`."""

    def __init__(self, directory: Path, *, tls: bool = False, htpasswd: bool = False, token: bool = False,
                 user: str = "tester", password: str = None):
        _need(REGISTRY_BIN, "docker-registry")
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.storage = directory / "storage"
        self.tls = tls
        self.user = user if (htpasswd or token) else None
        # A password that cannot turn up in output by chance: the tests grep for it.
        self.password = (password or "pw-" + secrets.token_hex(12)) if (htpasswd or token) else None
        self.cert_dir = None
        self.ca = None
        self.token_server = None
        config = {
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "cache": {"blobdescriptor": "inmemory"}},
            "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if tls:
            ca_key, self.ca = make_ca(directory / "pki")
            key, cert = make_server_cert(directory / "pki", ca_key, self.ca)
            config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        if htpasswd:
            make_htpasswd(directory / "htpasswd", self.user, self.password)
            config["auth"] = {"htpasswd": {"realm": "ocibuild-test", "path": str(directory / "htpasswd")}}
        if token:
            self.token_server = TokenServer(directory / "token", self.user, self.password,
                                            service="ocibuild-test-registry", issuer="ocibuild-test-issuer")
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": "ocibuild-test-registry",
                                        "issuer": "ocibuild-test-issuer",
                                        "rootcertbundle": str(self.token_server.cert)}}
        self.config = directory / "config.json"  # JSON is YAML: distribution reads it as is
        self.config.write_text(json.dumps(config, indent=1))
        self.log = directory / "registry.log"
        self.proc = None
        self.host = None
        self._start()

    def _start(self):
        self.storage.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = re.search(r'listening on 127\.0\.0\.1:(\d+)', self.log.read_text(errors="replace"))
            if m:
                self.host = f"127.0.0.1:{m.group(1)}"
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        if self.host is None:
            self.stop()
            raise AssertionError(f"docker-registry did not start; log:\n{self.log.read_text(errors='replace')}")
        if self.tls:
            self.cert_dir = self.dir / "certs.d"
            (self.cert_dir / self.host).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.ca, self.cert_dir / self.host / "ca.crt")
        self.url = f"{'https' if self.tls else 'http'}://{self.host}"
        while time.monotonic() < deadline:
            status, _, _ = self.curl("/v2/", creds=False, check=False)
            if status in (200, 401):
                return
            time.sleep(0.01)
        raise AssertionError(f"registry on {self.host} never answered /v2/; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server:
            self.token_server.stop()
            self.token_server = None

    # -- naming --------------------------------------------------------------------------------
    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"

    # -- skopeo ----------------------------------------------------------------------------------
    def _skopeo_flags(self, side: str, creds: bool):
        flags = []
        if self.tls:
            flags.append(f"--{side}cert-dir={self.cert_dir / self.host}")
        else:
            flags.append(f"--{side}tls-verify=false")
        if creds and self.user:
            flags.append(f"--{side}creds={self.creds}")
        return flags

    def skopeo_src(self, creds=True):
        return self._skopeo_flags("src-", creds)

    def skopeo_dest(self, creds=True):
        return self._skopeo_flags("dest-", creds)

    def skopeo_inspect_flags(self, creds=True):
        return self._skopeo_flags("", creds)

    def push_layout(self, source: str, name: str, all_images: bool = False) -> str:
        """`skopeo copy SOURCE docker://HOST/NAME` (SOURCE like "oci:DIR:TAG"); returns the pushed digest."""
        _need("skopeo", "skopeo")
        cmd = ["skopeo", "copy", "--retry-times=0", *self.skopeo_dest()]
        if all_images:
            cmd.append("--all")
        digest_file = self.dir / f"digest-{secrets.token_hex(4)}"
        _run(cmd + [f"--digestfile={digest_file}", source, f"docker://{self.ref(name)}"])
        return digest_file.read_text().strip()

    def skopeo_inspect(self, name: str, *extra):
        _need("skopeo", "skopeo")
        proc = _run(["skopeo", "inspect", *self.skopeo_inspect_flags(), *extra, f"docker://{self.ref(name)}"])
        return proc.stdout if "--raw" in extra else json.loads(proc.stdout)

    # -- curl -------------------------------------------------------------------------------------
    def bearer_token(self, challenge: str, creds: bool) -> str:
        """Gets a token from the realm in a `Bearer realm=...,service=...,scope=...` challenge, with curl."""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": params.get("service", "")}
        if "scope" in params:
            query["scope"] = params["scope"]
        cmd = ["curl", "-sS", "--fail", f"{params['realm']}?{urllib.parse.urlencode(query)}"]
        if creds and self.user:
            cmd[1:1] = ["-u", self.creds]
        return json.loads(_run(cmd).stdout)["token"]

    def curl(self, path: str, *, method: str = "GET", headers=(), creds: bool = True, check: bool = True,
             data: bytes = None, token: bool = True):
        """Raw HTTP with curl: returns (status, {lower-case header: value}, body bytes).

        Basic credentials for htpasswd; for token auth it answers the 401 challenge as a client would
        (anonymously when creds is False; not at all when token is False)."""
        _need("curl", "curl")

        def once(extra):
            hdr_file = self.dir / f"curl-headers-{secrets.token_hex(4)}"
            cmd = ["curl", "-sS", "-D", hdr_file, "-o", "-"]
            cmd += ["--head"] if method == "HEAD" else ["-X", method]
            if self.tls:
                cmd += ["--cacert", self.ca]
            for h in list(headers) + extra:
                cmd += ["-H", h]
            if data is not None:
                cmd += ["--data-binary", "@-"]
            if creds and self.user and not self.token_server:
                cmd += ["-u", self.creds]
            proc = subprocess.run([str(c) for c in cmd + [self.url + path]], capture_output=True, input=data)
            if proc.returncode != 0:
                if not check:
                    return 0, {}, b""
                raise AssertionError(f"curl {self.url + path} failed: {proc.stderr.decode(errors='replace')}")
            raw = hdr_file.read_text(errors="replace")
            hdr_file.unlink()
            blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
            lines = blocks[-1].splitlines()
            status = int(lines[0].split()[1])
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            return status, hdrs, proc.stdout

        status, hdrs, body = once([])
        if status == 401 and token and self.token_server and hdrs.get("www-authenticate", "").startswith("Bearer "):
            token = self.bearer_token(hdrs["www-authenticate"], creds)
            status, hdrs, body = once([f"Authorization: Bearer {token}"])
        return status, hdrs, body

    def manifest(self, name: str, reference: str, accept: str = MANIFEST_ACCEPT):
        """(bytes, content type, Docker-Content-Digest) of a manifest exactly as the registry serves it."""
        status, hdrs, body = self.curl(f"/v2/{name}/manifests/{reference}", headers=[f"Accept: {accept}"])
        assert status == 200, f"GET manifest {name}:{reference} → {status}: {body[:300]!r}"
        return body, hdrs.get("content-type"), hdrs.get("docker-content-digest")

    def has_manifest(self, name: str, reference: str) -> bool:
        status, _, _ = self.curl(f"/v2/{name}/manifests/{reference}", method="HEAD",
                                 headers=[f"Accept: {MANIFEST_ACCEPT}"])
        return status == 200


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry-plain"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry-tls"), tls=True, htpasswd=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("registry-token"), token=True)
    yield reg
    reg.stop()


# ---------------------------------------------------------------------------------------------
# Fault-injecting proxy
# ---------------------------------------------------------------------------------------------

BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})(\?.*)?$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "expect"}


class FaultProxy:
    """HTTP/1.1 proxy on 127.0.0.1:PORT forwarding to an upstream plain-HTTP registry.

    Faults, each armed by a method:
    - `cut_blob_once(after, min_size)`: the first GET of a blob whose response body is larger than
      `min_size` (and than `after`) gets its headers (full Content-Length) and `after` body bytes,
      then the connection is closed. Later requests pass through.
    - `corrupt_blobs(min_size, digest=None)`: every GET of a blob larger than `min_size` (or only of
      `digest`) has one byte flipped in the middle of the body.
    - `throttle_once(pattern, retry_after=1)`: the first GET/HEAD whose path matches `pattern` is
      answered 429 + `Retry-After` with a TOOMANYREQUESTS body; later ones pass through.
    `events` records every request: dict(method, path, range, status, sent, fault, t).
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.events = []
        self._lock = threading.Lock()
        self.cut = None  # (after, min_size)
        self.corrupt = None  # (min_size, digest or None)
        self.throttle = None  # (compiled pattern, retry_after)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"

    def cut_blob_once(self, after: int, min_size: int):
        self.cut = (after, min_size)

    def corrupt_blobs(self, min_size: int = 0, digest: str = None):
        self.corrupt = (min_size, digest)

    def throttle_once(self, pattern: str = r"^/v2/.+/manifests/", retry_after: int = 1):
        self.throttle = (re.compile(pattern), retry_after)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, h, status, sent=0, fault=None):
        with self._lock:
            self.events.append({"method": h.command, "path": h.path, "range": h.headers.get("Range"),
                                "status": status, "sent": sent, "fault": fault, "t": time.monotonic()})

    @staticmethod
    def _read_body(h) -> bytes:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += h.rfile.read(size)
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _handle(self, h):
        body = self._read_body(h)
        with self._lock:
            throttle = self.throttle
            if throttle and h.command in ("GET", "HEAD") and throttle[0].search(h.path):
                self.throttle = None
            else:
                throttle = None
        if throttle:
            retry_after = throttle[1]
            payload = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]}).encode()
            h.send_response_only(429, "Too Many Requests")
            h.send_header("Retry-After", str(retry_after))
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
            self._record(h, 429, fault="429")
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.headers.items():
            if k.lower() not in HOP_BY_HOP:
                conn.putheader(k, v)
        if body or h.command in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        length = resp.getheader("Content-Length")
        if h.command == "HEAD" or resp.status in (204, 304) or (length is None and resp.status < 200):
            data = None
        elif length is None:
            data = resp.read()
            length = str(len(data))
        else:
            data = None
        h.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                h.send_header(k, v)
        if length is not None:
            h.send_header("Content-Length", length)
        h.end_headers()
        if h.command == "HEAD" or length is None:
            conn.close()
            self._record(h, resp.status)
            return
        total = int(length)
        blob = BLOB_PATH.match(h.path) if h.command == "GET" and resp.status in (200, 206) else None
        fault = None
        cut_at = None
        flip_at = None
        with self._lock:
            if blob and self.cut and total > max(self.cut[1], self.cut[0]):
                cut_at = self.cut[0]
                self.cut = None
                fault = "cut"
        if blob and self.corrupt and total > self.corrupt[0] and self.corrupt[1] in (None, blob["digest"]):
            flip_at = total // 2
            fault = "corrupt"
        sent = 0
        try:
            if data is not None:
                h.wfile.write(data)
                sent = len(data)
            while sent < total:
                want = min(1 << 16, total - sent)
                if cut_at is not None:
                    want = min(want, cut_at - sent)
                    if want <= 0:
                        break
                chunk = resp.read(want)
                if not chunk:
                    break
                if flip_at is not None and sent <= flip_at < sent + len(chunk):
                    b = bytearray(chunk)
                    b[flip_at - sent] ^= 0xFF
                    chunk = bytes(b)
                h.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        finally:
            conn.close()
        if cut_at is not None:
            h.close_connection = True
            try:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._record(h, resp.status, sent, fault)


@pytest.fixture
def fault_proxy():
    """Factory: `proxy = fault_proxy(plain_registry)`; every proxy made is stopped after the test."""
    made = []

    def make(registry) -> FaultProxy:
        assert not registry.tls and not registry.user, "the fault proxy speaks plain HTTP without auth"
        p = FaultProxy(registry.host)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


# ---------------------------------------------------------------------------------------------
# OCI layout helpers
# ---------------------------------------------------------------------------------------------

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_blob(layout: Path, data: bytes) -> dict:
    """Adds a blob to an OCI layout; returns {"digest", "size"}."""
    hexd = sha256_hex(data)
    path = layout / "blobs" / "sha256" / hexd
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return {"digest": "sha256:" + hexd, "size": len(data)}


def tag_in_layout(layout: Path, tag: str, descriptor: dict):
    """Points TAG in LAYOUT/index.json at DESCRIPTOR (replacing an older entry for that tag)."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    if not (layout / "oci-layout").exists():
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    entry = dict(descriptor)
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index["manifests"].append(entry)
    index_path.write_text(json.dumps(index))


def blobs_of(layout: Path) -> dict:
    """{hex digest: bytes} of every blob under LAYOUT/blobs/sha256."""
    d = layout / "blobs" / "sha256"
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} if d.is_dir() else {}


def make_random_image(layout: Path, tag: str, size: int, seed: bytes = b"") -> dict:
    """An OCI layout holding one linux/amd64 image whose single tar+gzip layer carries SIZE random bytes
    (incompressible, so the blob is a bit over SIZE). Returns {"manifest", "layer", "config"}
    descriptors (digest/size)."""
    import gzip
    import io
    import tarfile
    payload = (hashlib.sha256(seed).digest() + os.urandom(size))[:size]
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mode, info.mtime = size, 0o644, 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    layer = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    layer_desc = write_blob(layout, layer)
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(tar_bytes)]}}
    config_desc = write_blob(layout, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}]}
    manifest_desc = write_blob(layout, json.dumps(manifest, separators=(",", ":")).encode())
    tag_in_layout(layout, tag, {"mediaType": OCI_MANIFEST, **manifest_desc})
    return {"manifest": manifest_desc, "layer": layer_desc, "config": config_desc}


def make_multiplatform_layout(base_layout: Path, layout: Path, tag: str = "multi") -> dict:
    """Copies BASE_LAYOUT (busybox, tag "1", linux/amd64) to LAYOUT, makes an arm64 variant with
    `umoci config --architecture arm64` (same layers, only the config differs), and tags an OCI
    image index of both (with platform fields) as TAG. Returns {"index": desc, "amd64": desc,
    "arm64": desc, "index_bytes": bytes} (descriptors with mediaType/digest/size/platform)."""
    _need("umoci", "umoci")
    shutil.copytree(base_layout, layout)
    _run(["umoci", "config", "--image", f"{layout}:1", "--tag", "arm64", "--architecture", "arm64",
          "--os", "linux", "--no-history"])
    index = json.loads((layout / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    amd64 = {"mediaType": OCI_MANIFEST, "digest": by_tag["1"]["digest"], "size": by_tag["1"]["size"],
             "platform": {"architecture": "amd64", "os": "linux"}}
    arm64 = {"mediaType": OCI_MANIFEST, "digest": by_tag["arm64"]["digest"], "size": by_tag["arm64"]["size"],
             "platform": {"architecture": "arm64", "os": "linux"}}
    for desc, arch in ((amd64, "amd64"), (arm64, "arm64")):
        m = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())
        cfg = json.loads((layout / "blobs/sha256" / m["config"]["digest"].split(":")[1]).read_bytes())
        assert cfg["architecture"] == arch, cfg
    index_bytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64]},
                             separators=(",", ":")).encode()
    index_desc = {"mediaType": OCI_INDEX, **write_blob(layout, index_bytes)}
    tag_in_layout(layout, tag, index_desc)
    return {"index": index_desc, "amd64": amd64, "arm64": arm64, "index_bytes": index_bytes}
