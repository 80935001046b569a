"""Conda channels made at test time, served from a folder or over HTTP on 127.0.0.1.

- `make_channel(root, packages)` writes `root/<subdir>/repodata.json` (and `.json.zst`, made with
  the `zstd` command) for every subdir the packages use, plus `noarch` (empty when unused: a
  channel must serve it). Each package is a dict:

      name, version, build="0", build_number=0, depends=[], constrains=[], track_features="",
      subdir="linux-64", noarch=None, fn=f"{name}-{version}-{build}.conda",
      files={path: bytes | str}   (optional: a real artifact, see below)

  Any other key (timestamp, license, record_version, md5, sha256, size, ...) goes into the record
  as given. With "files", `conda_packages.write_artifact(subdir_dir, record, files)` writes the
  artifact next to the repodata and md5/sha256/size describe that file; otherwise they are
  deterministic fakes derived from the file name. `.conda` files land in "packages.conda",
  `.tar.bz2` ones in "packages".
- `ChannelServer(folder)`: a context manager serving `folder` on http://127.0.0.1:<free port>
  (`.url`), with ETag and Last-Modified, answering 304 to a matching If-None-Match or a current
  If-Modified-Since. Every request is recorded in `.requests` as (method, path, status, headers).
  `.status_for[path] = code` makes a path answer that status instead.
"""
import email.utils
import hashlib
import http.server
import subprocess
import threading
from pathlib import Path

_RECORD_DEFAULTS = {
    "build": "0",
    "build_number": 0,
    "depends": [],
    "constrains": [],
    "track_features": "",
    "subdir": "linux-64",
    "noarch": None,
}


def _record(package: dict) -> dict:
    """The repodata record of a package dict (without md5/sha256/size unless given)."""
    record = {k: package.get(k, v) for k, v in _RECORD_DEFAULTS.items()}
    record["name"] = package["name"]
    record["version"] = str(package["version"])
    record["depends"] = list(record["depends"])
    record["constrains"] = list(record["constrains"])
    for key, value in package.items():
        if key not in ("files", "fn") and key not in record:
            record[key] = value
    if record["noarch"] is None:
        del record["noarch"]
    if not record["track_features"]:
        del record["track_features"]
    if not record["constrains"]:
        del record["constrains"]
    return record


def _fake_hashes(subdir: str, fn: str) -> dict:
    seed = f"{subdir}/{fn}".encode()
    sha256 = hashlib.sha256(seed).hexdigest()
    return {
        "md5": hashlib.md5(seed).hexdigest(),
        "sha256": sha256,
        "size": 1000 + int(sha256[:8], 16) % 5_000_000,
    }


def _file_hashes(path: Path) -> dict:
    data = path.read_bytes()
    return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def make_channel(root: Path, packages: list, zst: bool = True, json: bool = True,
                 removed: dict = None, info: dict = None) -> Path:
    """Writes the channel under `root` and returns `root`. `removed`: {subdir: [fn, ...]};
    `info`: extra keys for every subdir's "info" (e.g. base_url)."""
    import json as json_module

    root = Path(root)
    subdirs = {"noarch": {}}
    for package in packages:
        record = _record(package)
        subdir = record["subdir"]
        fn = package.get("fn") or f"{record['name']}-{record['version']}-{record['build']}.conda"
        subdir_dir = root / subdir
        subdir_dir.mkdir(parents=True, exist_ok=True)
        if "files" in package:
            import conda_packages  # written by another test module; only needed for real artifacts

            artifact = Path(conda_packages.write_artifact(subdir_dir, dict(record, fn=fn), package["files"]))
            record.update(_file_hashes(artifact))
        else:
            for key, value in _fake_hashes(subdir, fn).items():
                record.setdefault(key, value)
        key = "packages.conda" if fn.endswith(".conda") else "packages"
        entries = subdirs.setdefault(subdir, {})
        entries.setdefault(key, {})[fn] = record

    for subdir, entries in subdirs.items():
        subdir_dir = root / subdir
        subdir_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "info": {"subdir": subdir, **(info or {})},
            "packages": entries.get("packages", {}),
            "packages.conda": entries.get("packages.conda", {}),
            "removed": sorted((removed or {}).get(subdir, [])),
            "repodata_version": 1,
        }
        text = json_module.dumps(document, indent=1, sort_keys=True)
        plain = subdir_dir / "repodata.json"
        plain.write_text(text)
        compressed = subdir_dir / "repodata.json.zst"
        if zst:
            subprocess.run(["zstd", "-q", "-f", str(plain), "-o", str(compressed)], check=True)
        elif compressed.exists():
            compressed.unlink()
        if not json:
            plain.unlink()
    return root


class ChannelServer:
    """Serves a folder over HTTP on 127.0.0.1 with conditional GETs; see the module doc."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.requests = []
        self.status_for = {}
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self, status=None) -> list:
        """Paths requested so far (with that status, when given)."""
        with self._lock:
            return [p for (_, p, s, _) in self.requests if status is None or s == status]

    def __enter__(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self, send_body: bool):
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body, extra = server._respond(path, headers)
                with server._lock:
                    server.requests.append((self.command, path, status, headers))
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body and body:
                    self.wfile.write(body)

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _respond(self, path: str, headers: dict):
        if path in self.status_for:
            return self.status_for[path], b"forced status\n", {"Content-Type": "text/plain"}
        file = (self.folder / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.folder) or not file.is_file():
            return 404, b"not found\n", {"Content-Type": "text/plain"}
        data = file.read_bytes()
        mtime = int(file.stat().st_mtime)
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        extra = {
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
            "Content-Type": "application/json" if file.suffix == ".json" else "application/octet-stream",
        }
        if "if-none-match" in headers:
            tags = [t.strip() for t in headers["if-none-match"].split(",")]
            if etag in tags or "*" in tags:
                return 304, b"", extra
        elif "if-modified-since" in headers:
            try:
                since = email.utils.parsedate_to_datetime(headers["if-modified-since"]).timestamp()
            except (TypeError, ValueError):
                since = None
            if since is not None and mtime <= since:
                return 304, b"", extra
        return 200, data, extra
