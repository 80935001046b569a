"""The registry client as a user drives it: pull, push, inspect, login/logout, build --push and registry
bases, against the Distribution registry on 127.0.0.1 (fixtures in registry.py), with skopeo and curl
as the oracles. No test here reaches anything but loopback."""
import base64
import json
import os
import platform
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import need, read_blob, read_layout_manifest, run, write_recipe
from registry import (OCI_MANIFEST, Registry, blobs_of, fault_proxy,  # noqa: F401
                      make_multiplatform_layout, make_random_image, plain_registry, sha256_hex,
                      tls_registry, token_registry)

HELLO = Path(__file__).resolve().parents[2] / "recipes" / "hello.toml"
TIMEOUT = 300  # seconds for one ocibuild command: a hang is a failure, not a stuck suite


@dataclass
class Image:
    registry: Registry
    name: str
    tag: str
    digest: str
    layout: Path  # the OCI layout it was pushed from (tag "1" unless said otherwise)

    @property
    def ref(self) -> str:
        return f"{self.registry.host}/{self.name}:{self.tag}"


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    """Every test starts with no credentials anywhere: a fresh HOME and XDG_RUNTIME_DIR, and none of
    REGISTRY_AUTH_FILE, DOCKER_CONFIG, XDG_CONFIG_HOME. Returns (home, xdg_runtime_dir)."""
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    xdg = tmp_path / "xdg-run"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    return home, xdg


@pytest.fixture
def ob(ocibuild):
    """ocibuild with a timeout; check=False by default so that tests look at exit codes themselves."""
    def call(*args, check=False, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return ocibuild(*args, check=check, **kw)
    call.store = ocibuild.store
    return call


@pytest.fixture(scope="session")
def busybox_image(plain_registry, busybox_layout):
    digest = plain_registry.push_layout(f"oci:{busybox_layout}:1", "library/busybox:1")
    return Image(plain_registry, "library/busybox", "1", digest, busybox_layout)


@pytest.fixture(scope="session")
def tls_image(tls_registry, busybox_layout):
    digest = tls_registry.push_layout(f"oci:{busybox_layout}:1", "team/busybox:1")
    return Image(tls_registry, "team/busybox", "1", digest, busybox_layout)


@pytest.fixture(scope="session")
def token_images(token_registry, busybox_layout):
    public = token_registry.push_layout(f"oci:{busybox_layout}:1", "public/busybox:1")
    private = token_registry.push_layout(f"oci:{busybox_layout}:1", "private/busybox:1")
    return (Image(token_registry, "public/busybox", "1", public, busybox_layout),
            Image(token_registry, "private/busybox", "1", private, busybox_layout))


@pytest.fixture(scope="session")
def multi_image(plain_registry, busybox_layout, tmp_path_factory):
    """An OCI index of linux/amd64 and linux/arm64 (same busybox layer, configs differ)."""
    layout = tmp_path_factory.mktemp("multi") / "layout"
    multi = make_multiplatform_layout(busybox_layout, layout)
    digest = plain_registry.push_layout(f"oci:{layout}:multi", "multi/busybox:1", all_images=True)
    assert digest == multi["index"]["digest"]
    return Image(plain_registry, "multi/busybox", "1", digest, layout), multi


@pytest.fixture(scope="session")
def random_image(plain_registry, tmp_path_factory):
    """One image with a ~30 MB incompressible tar+gzip layer."""
    layout = tmp_path_factory.mktemp("random") / "layout"
    info = make_random_image(layout, "1", 30 << 20)
    digest = plain_registry.push_layout(f"oci:{layout}:1", "big/random:1")
    assert digest == info["manifest"]["digest"]
    return Image(plain_registry, "big/random", "1", digest, layout), info


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def secrets_of(reg: Registry, *extra):
    return [s for s in (reg.password, base64.b64encode(reg.creds.encode()).decode(), *extra) if s]


def assert_no_secret(proc, reg: Registry, *extra):
    for s in secrets_of(reg, *extra):
        assert s not in proc.stdout, f"a secret was printed on stdout:\n{proc.stdout}"
        assert s not in proc.stderr, f"a secret was printed on stderr:\n{proc.stderr}"


def assert_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def assert_fails(proc, code=1):
    assert proc.returncode == code, f"expected exit {code}, got {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def printed_digest(proc) -> str:
    """pull/push print the digest alone on stdout."""
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, f"stdout is not one line: {proc.stdout!r}"
    digest = proc.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71, digest
    return digest


def assert_same_blobs(source: Path, dest: Path):
    """Every blob of SOURCE is in DEST with identical bytes, and every blob of DEST is well named."""
    src, got = blobs_of(source), blobs_of(dest)
    missing = sorted(set(src) - set(got))
    assert not missing, f"blobs missing from {dest}: {missing}"
    for h, data in src.items():
        assert got[h] == data, f"blob {h} differs"
    for h, data in got.items():
        assert sha256_hex(data) == h, f"{dest}/blobs/sha256/{h} does not hash to its name"


def assert_store_is_sound(store: Path):
    """Every file under blobs/sha256 hashes to its name; no writer left a temp file behind."""
    for h, data in blobs_of(store).items():
        assert sha256_hex(data) == h, f"store blob {h} holds other content"
    ingest = store / "ingest"
    leftovers = [p for p in ingest.rglob("*") if p.is_file()] if ingest.exists() else []
    assert not leftovers, f"temp files left in the store: {leftovers}"


def write_authfile(path: Path, entries: dict):
    """containers auth.json: {"auths": {host: {"auth": base64(user:pass)}}}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {h: {"auth": base64.b64encode(c.encode()).decode()}
                                          for h, c in entries.items()}}))
    os.chmod(path, 0o600)
    return path


def resolve(layout: Path, tag: str, arch: str = None):
    """(manifest digest, manifest, config bytes) for TAG in LAYOUT, through an index if TAG names one."""
    digest, doc = read_layout_manifest(layout, tag)
    if "manifests" in doc:
        picks = [m for m in doc["manifests"] if m.get("platform", {}).get("architecture") == arch]
        assert len(picks) == 1, f"{layout}:{tag} is an index without exactly one {arch} entry: {doc}"
        digest = picks[0]["digest"]
        doc = json.loads(read_blob(layout, digest))
    return digest, doc, read_blob(layout, doc["config"]["digest"])


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


# ---------------------------------------------------------------------------------------------
# Anonymous pull and push on the plain-HTTP loopback registry
# ---------------------------------------------------------------------------------------------

def test_pull_writes_a_byte_identical_layout(ob, busybox_image, tmp_path):
    out = tmp_path / "pulled"
    proc = ob("pull", busybox_image.ref, "-o", f"oci:{out}:1")
    assert_ok(proc)
    assert printed_digest(proc) == busybox_image.digest
    assert read_layout_manifest(out, "1")[0] == busybox_image.digest
    assert_same_blobs(busybox_image.layout, out)
    assert set(blobs_of(out)) == set(blobs_of(busybox_image.layout))
    # Pulled into the store too, verified.
    _, manifest = read_layout_manifest(busybox_image.layout, "1")
    store = blobs_of(ob.store)
    for d in [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]:
        assert store.get(d.split(":")[1]) == read_blob(busybox_image.layout, d)
    assert_store_is_sound(ob.store)
    # Progress: stderr is not a TTY here, so one line per blob, no carriage returns.
    assert "\r" not in proc.stderr
    for d in [l["digest"] for l in manifest["layers"]]:
        assert d.split(":")[1][:12] in proc.stderr, f"no progress line for {d}:\n{proc.stderr}"
    need("oci-image-tool")
    run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=1", out])


def test_pull_by_digest_into_a_given_store(ob, busybox_image, tmp_path):
    store = tmp_path / "other-store"
    ref = f"{busybox_image.registry.host}/{busybox_image.name}@{busybox_image.digest}"
    proc = ob("pull", ref, "--store", store)
    assert_ok(proc)
    assert printed_digest(proc) == busybox_image.digest
    _, manifest = read_layout_manifest(busybox_image.layout, "1")
    for layer in manifest["layers"]:
        assert (store / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes() == \
            read_blob(busybox_image.layout, layer["digest"])
    assert_store_is_sound(store)
    # A second pull finds everything in the store and still answers the same digest.
    again = ob("pull", ref, "--store", store)
    assert_ok(again)
    assert printed_digest(again) == busybox_image.digest


def test_localhost_is_plain_http_without_flags(ob, busybox_image, tmp_path):
    port = busybox_image.registry.host.split(":")[1]
    proc = ob("pull", f"localhost:{port}/{busybox_image.name}:1", "-o", f"oci:{tmp_path / 'out'}:1")
    assert_ok(proc)
    assert printed_digest(proc) == busybox_image.digest


def test_pull_of_a_missing_tag_fails(ob, busybox_image):
    proc = ob("pull", f"{busybox_image.registry.host}/{busybox_image.name}:no-such-tag")
    assert_fails(proc)
    assert "no-such-tag" in proc.stderr
    assert proc.stdout == ""


def test_push_then_skopeo_reads_it_back(ob, plain_registry, busybox_layout, tmp_path):
    need("skopeo")
    source_digest, _ = read_layout_manifest(busybox_layout, "1")
    proc = ob("push", f"oci:{busybox_layout}:1", plain_registry.ref("pushed/busybox:1"))
    assert_ok(proc)
    assert printed_digest(proc) == source_digest
    assert plain_registry.skopeo_inspect("pushed/busybox:1")["Digest"] == source_digest
    raw, ctype, served = plain_registry.manifest("pushed/busybox", "1")
    assert raw == read_blob(busybox_layout, source_digest) and ctype == OCI_MANIFEST and served == source_digest
    back = tmp_path / "back"
    run(["skopeo", "copy", *plain_registry.skopeo_src(), f"docker://{plain_registry.ref('pushed/busybox:1')}",
         f"oci:{back}:1"])
    assert_same_blobs(busybox_layout, back)
    # Pushing again is a no-op that answers the same digest.
    again = ob("push", f"oci:{busybox_layout}:1", plain_registry.ref("pushed/busybox:1"))
    assert_ok(again)
    assert printed_digest(again) == source_digest


def test_push_from_an_oci_archive(ob, plain_registry, busybox_layout, tmp_path):
    need("skopeo")
    archive = tmp_path / "busybox.tar"
    run(["skopeo", "copy", f"oci:{busybox_layout}:1", f"oci-archive:{archive}:v1"])
    source_digest = json.loads(run(["skopeo", "inspect", f"oci-archive:{archive}:v1"]).stdout)["Digest"]
    proc = ob("push", f"oci-archive:{archive}:v1", plain_registry.ref("archive/busybox:v1"))
    assert_ok(proc)
    assert printed_digest(proc) == source_digest
    assert plain_registry.skopeo_inspect("archive/busybox:v1")["Digest"] == source_digest


def test_usage_errors_exit_2(ob, plain_registry, busybox_layout):
    assert_fails(ob("pull"), 2)
    assert_fails(ob("push", f"oci:{busybox_layout}:1"), 2)
    # Neither oci:, oci-archive: nor a valid image reference ("/nope" is no tag).
    assert_fails(ob("push", "tarball:/nope", plain_registry.ref("x/y:1")), 2)
    assert_fails(ob("inspect"), 2)
    assert_fails(ob("login", plain_registry.host), 2)  # no -u
    assert_fails(ob("logout"), 2)


def test_a_usage_error_does_not_echo_the_password(ob, tls_image, tmp_path):
    reg = tls_image.registry
    proc = ob("login", reg.host, "-u", reg.user, "-p", reg.password, "--no-such-flag",
              "--authfile", tmp_path / "auth.json")
    assert_fails(proc, 2)
    assert_no_secret(proc, reg)
    assert not (tmp_path / "auth.json").exists()


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------

def test_inspect_raw_is_what_the_registry_serves(ob, busybox_image, multi_image):
    for image in (busybox_image, multi_image[0]):
        raw, _, _ = image.registry.manifest(image.name, image.tag)
        proc = ob("inspect", image.ref, "--raw", text=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert proc.stdout == raw
    assert multi_image[0].registry.manifest("multi/busybox", "1")[0] == multi_image[1]["index_bytes"]


def test_inspect_config(ob, busybox_image):
    _, manifest = read_layout_manifest(busybox_image.layout, "1")
    proc = ob("inspect", busybox_image.ref, "--config")
    assert_ok(proc)
    assert json.loads(proc.stdout) == json.loads(read_blob(busybox_image.layout, manifest["config"]["digest"]))


def test_inspect_format_json(ob, busybox_image):
    raw, _, _ = busybox_image.registry.manifest(busybox_image.name, busybox_image.tag)
    manifest = json.loads(raw)
    proc = ob("inspect", busybox_image.ref, "--format", "json")
    assert_ok(proc)
    info = json.loads(proc.stdout)
    assert set(info) >= {"Name", "Digest", "MediaType", "Platform", "Layers", "Size"}
    repo = f"{busybox_image.registry.host}/{busybox_image.name}"
    assert info["Name"] in (repo, f"{repo}:{busybox_image.tag}"), info["Name"]
    assert info["Digest"] == busybox_image.digest
    assert info["MediaType"] == OCI_MANIFEST
    plat = info["Platform"]
    if isinstance(plat, dict):
        assert (plat.get("os"), plat.get("architecture")) == ("linux", "amd64"), plat
    else:
        assert plat == "linux/amd64"
    assert info["Layers"] == [{"Digest": l["digest"], "Size": l["size"], "MediaType": l["mediaType"]}
                              for l in manifest["layers"]]
    # The image's size: config plus layers, as they travel (compressed).
    assert info["Size"] == manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])


def test_inspect_local_layout_agrees_with_the_registry(ob, busybox_image):
    procs = [ob("inspect", f"oci:{busybox_image.layout}:1", "--format", "json"),
             ob("inspect", busybox_image.ref, "--format", "json")]
    for proc in procs:
        assert_ok(proc)
    local, remote = (json.loads(p.stdout) for p in procs)
    assert local["Digest"] == remote["Digest"] == busybox_image.digest
    assert local["Layers"] == remote["Layers"]
    raw = ob("inspect", f"oci:{busybox_image.layout}:1", "--raw", text=False)
    assert raw.returncode == 0 and raw.stdout == read_blob(busybox_image.layout, busybox_image.digest)


# ---------------------------------------------------------------------------------------------
# TLS + htpasswd: login, auth.json, credentials lookup
# ---------------------------------------------------------------------------------------------

def test_tls_pull_without_credentials_is_unauthorized(ob, tls_image):
    reg = tls_image.registry
    proc = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir)
    assert_fails(proc)
    assert "unauthorized" in proc.stderr.lower() or "401" in proc.stderr, proc.stderr
    assert_no_secret(proc, reg)


def test_tls_without_the_ca_is_refused(ob, tls_image, tmp_path):
    """The CA is only in --cert-dir: without it the pull must fail, never accept the unknown cert."""
    reg = tls_image.registry
    authfile = write_authfile(tmp_path / "auth.json", {reg.host: reg.creds})
    proc = ob("pull", tls_image.ref, "--authfile", authfile)
    assert_fails(proc)
    assert proc.stdout == ""
    assert_no_secret(proc, reg)


def test_login_then_pull_and_push_with_the_authfile(ob, tls_image, busybox_layout, tmp_path):
    reg = tls_image.registry
    authfile = tmp_path / "auth" / "auth.json"
    login = ob("login", reg.host, "-u", reg.user, "--password-stdin", "--authfile", authfile,
               "--cert-dir", reg.cert_dir, input=reg.password + "\n")
    assert_ok(login)
    assert_no_secret(login, reg)
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    entry = json.loads(authfile.read_text())["auths"][reg.host]
    assert base64.b64decode(entry["auth"]).decode() == reg.creds

    out = tmp_path / "pulled"
    pull = ob("pull", tls_image.ref, "--authfile", authfile, "--cert-dir", reg.cert_dir, "-o", f"oci:{out}:1")
    assert_ok(pull)
    assert_no_secret(pull, reg)
    assert printed_digest(pull) == tls_image.digest
    assert_same_blobs(tls_image.layout, out)

    push = ob("push", f"oci:{busybox_layout}:1", reg.ref("team/pushed:1"), "--authfile", authfile,
              "--cert-dir", reg.cert_dir)
    assert_ok(push)
    assert_no_secret(push, reg)
    assert reg.skopeo_inspect("team/pushed:1")["Digest"] == printed_digest(push) == tls_image.digest


def test_login_with_p_writes_the_default_authfile_and_logout_removes_it(ob, tls_image, no_ambient_credentials):
    reg = tls_image.registry
    _, xdg = no_ambient_credentials
    login = ob("login", reg.host, "-u", reg.user, "-p", reg.password, "--cert-dir", reg.cert_dir)
    assert_ok(login)
    assert_no_secret(login, reg)
    default = xdg / "containers" / "auth.json"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert base64.b64decode(json.loads(default.read_text())["auths"][reg.host]["auth"]).decode() == reg.creds
    pull = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir)  # found in ${XDG_RUNTIME_DIR}/containers
    assert_ok(pull)
    assert_no_secret(pull, reg)
    logout = ob("logout", reg.host)
    assert_ok(logout)
    assert reg.host not in json.loads(default.read_text()).get("auths", {})
    again = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir)
    assert_fails(again)
    assert "unauthorized" in again.stderr.lower() or "401" in again.stderr


def test_login_honours_registry_auth_file_and_keeps_other_entries(ob, tls_image, tmp_path, no_ambient_credentials):
    reg = tls_image.registry
    _, xdg = no_ambient_credentials
    authfile = write_authfile(tmp_path / "env-auth.json", {"other.example:5000": "someone:else"})
    env = {"REGISTRY_AUTH_FILE": str(authfile)}
    login = ob("login", reg.host, "-u", reg.user, "--password-stdin", "--cert-dir", reg.cert_dir,
               input=reg.password, env=env)
    assert_ok(login)
    auths = json.loads(authfile.read_text())["auths"]
    assert set(auths) == {"other.example:5000", reg.host}
    assert base64.b64decode(auths["other.example:5000"]["auth"]).decode() == "someone:else"
    assert not (xdg / "containers" / "auth.json").exists()
    assert_ok(ob("logout", reg.host, env=env))
    assert set(json.loads(authfile.read_text())["auths"]) == {"other.example:5000"}


def test_login_with_a_wrong_password_fails_and_prints_no_secret(ob, tls_image, tmp_path):
    reg = tls_image.registry
    wrong = "wrong-" + reg.password[::-1]
    authfile = tmp_path / "auth.json"
    for how in (["--password-stdin"], ["-p", wrong]):
        proc = ob("login", reg.host, "-u", reg.user, *how, "--authfile", authfile, "--cert-dir", reg.cert_dir,
                  input=wrong + "\n")
        assert_fails(proc)
        assert_no_secret(proc, reg, wrong, base64.b64encode(f"{reg.user}:{wrong}".encode()).decode())
        assert "unauthorized" in proc.stderr.lower() or "401" in proc.stderr, proc.stderr
        assert not authfile.exists() or reg.host not in authfile.read_text()


@pytest.mark.parametrize("where", ["--authfile", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "docker-config"])
def test_credentials_lookup_order(ob, tls_image, tmp_path, no_ambient_credentials, where):
    """--authfile, then REGISTRY_AUTH_FILE, then ${XDG_RUNTIME_DIR}/containers/auth.json, ..., then
    ~/.docker/config.json: good credentials at WHERE, wrong ones in every later place."""
    reg = tls_image.registry
    home, xdg = no_ambient_credentials
    good, bad = {reg.host: reg.creds}, {reg.host: f"{reg.user}:not-the-password"}
    order = ["--authfile", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "docker-config"]
    files = {"--authfile": tmp_path / "flag-auth.json", "REGISTRY_AUTH_FILE": tmp_path / "env-auth.json",
             "XDG_RUNTIME_DIR": xdg / "containers" / "auth.json", "docker-config": home / ".docker" / "config.json"}
    for place in order[order.index(where):]:
        write_authfile(files[place], good if place == where else bad)
    args, env = [], {}
    if where == "--authfile":
        args = ["--authfile", files["--authfile"]]
    if files["REGISTRY_AUTH_FILE"].exists():
        env["REGISTRY_AUTH_FILE"] = str(files["REGISTRY_AUTH_FILE"])
    proc = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir, *args, env=env)
    assert_ok(proc)
    assert_no_secret(proc, reg)
    assert printed_digest(proc) == tls_image.digest


def test_namespace_credentials_win_over_the_registry_entry(ob, tls_image, tmp_path):
    """auth.json keys may name a namespace (host/org): the most specific key applies."""
    reg = tls_image.registry
    namespace = tls_image.name.split("/")[0]
    authfile = tmp_path / "auth.json"
    write_authfile(authfile, {reg.host: f"{reg.user}:not-the-password", f"{reg.host}/{namespace}": reg.creds})
    proc = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir, "--authfile", authfile)
    assert_ok(proc)
    assert_no_secret(proc, reg)
    assert printed_digest(proc) == tls_image.digest
    # And the other way round: the wrong password under the namespace fails even with a good host entry.
    write_authfile(authfile, {reg.host: reg.creds, f"{reg.host}/{namespace}": f"{reg.user}:not-the-password"})
    proc = ob("pull", tls_image.ref, "--cert-dir", reg.cert_dir, "--authfile", authfile)
    assert_fails(proc)


# ---------------------------------------------------------------------------------------------
# Token auth
# ---------------------------------------------------------------------------------------------

def test_token_anonymous_pull_of_public(ob, token_images, tmp_path):
    public, _ = token_images
    ts = public.registry.token_server
    seen = len(ts.requests)
    out = tmp_path / "out"
    proc = ob("pull", public.ref, "-o", f"oci:{out}:1")
    assert_ok(proc)
    assert printed_digest(proc) == public.digest
    assert_same_blobs(public.layout, out)
    new = ts.requests[seen:]
    assert any(r["user"] is None and not r["basic"] and r["status"] == 200
               and any(s.startswith("repository:public/busybox:") for s in r["scopes"]) for r in new), new


def test_token_anonymous_pull_of_private_is_denied(ob, token_images):
    _, private = token_images
    proc = ob("pull", private.ref)
    assert_fails(proc)
    low = proc.stderr.lower()
    assert any(w in low for w in ("unauthorized", "401", "denied", "403")), proc.stderr


def test_token_anonymous_push_is_denied(ob, token_images, busybox_layout):
    public, _ = token_images
    reg = public.registry
    proc = ob("push", f"oci:{busybox_layout}:1", reg.ref("public/anonymous-push:1"))
    assert_fails(proc)
    low = proc.stderr.lower()
    assert any(w in low for w in ("unauthorized", "401", "denied", "403")), proc.stderr
    assert not reg.has_manifest("public/anonymous-push", "1")


def test_token_login_and_push_with_credentials(ob, token_images, busybox_layout, tmp_path):
    public, _ = token_images
    reg = public.registry
    ts = reg.token_server
    authfile = tmp_path / "auth.json"
    login = ob("login", reg.host, "-u", reg.user, "--password-stdin", "--authfile", authfile, input=reg.password)
    assert_ok(login)
    assert_no_secret(login, reg)
    seen = len(ts.requests)
    push = ob("push", f"oci:{busybox_layout}:1", reg.ref("private/pushed:1"), "--authfile", authfile)
    assert_ok(push)
    assert_no_secret(push, reg)
    assert printed_digest(push) == public.digest
    assert reg.skopeo_inspect("private/pushed:1")["Digest"] == public.digest
    assert any(r["user"] == reg.user and any(g["name"] == "private/pushed" and "push" in g["actions"]
                                             for g in r["granted"]) for r in ts.requests[seen:])
    pull = ob("pull", reg.ref("private/pushed:1"), "--authfile", authfile)
    assert_ok(pull)
    assert printed_digest(pull) == public.digest


def test_token_login_with_a_wrong_password_fails(ob, token_images, tmp_path):
    reg = token_images[0].registry
    wrong = "bad-" + reg.password[::-1]
    proc = ob("login", reg.host, "-u", reg.user, "--password-stdin", "--authfile", tmp_path / "auth.json",
              input=wrong)
    assert_fails(proc)
    assert_no_secret(proc, reg, wrong)
    assert not (tmp_path / "auth.json").exists() or reg.host not in (tmp_path / "auth.json").read_text()


# ---------------------------------------------------------------------------------------------
# Multi-platform index
# ---------------------------------------------------------------------------------------------

def test_pull_platform_picks_the_arm64_manifest(ob, multi_image, tmp_path):
    image, multi = multi_image
    out = tmp_path / "out"
    proc = ob("pull", image.ref, "--platform", "linux/arm64", "-o", f"oci:{out}:got")
    assert_ok(proc)
    assert printed_digest(proc) == multi["index"]["digest"]
    digest, _, config = resolve(out, "got", "arm64")
    assert digest == multi["arm64"]["digest"]
    assert json.loads(config)["architecture"] == "arm64"
    source_manifest = json.loads(read_blob(image.layout, multi["arm64"]["digest"]))
    assert config == read_blob(image.layout, source_manifest["config"]["digest"])


def test_pull_default_platform_is_the_host(ob, multi_image, tmp_path):
    image, multi = multi_image
    out = tmp_path / "out"
    proc = ob("pull", image.ref, "-o", f"oci:{out}:got")
    assert_ok(proc)
    assert printed_digest(proc) == multi["index"]["digest"]
    digest, _, config = resolve(out, "got", host_arch())
    assert json.loads(config)["architecture"] == host_arch()
    assert digest == multi[host_arch()]["digest"]


def test_pull_platform_not_in_the_index_lists_the_available_ones(ob, multi_image):
    image, _ = multi_image
    proc = ob("pull", image.ref, "--platform", "linux/s390x")
    assert_fails(proc)
    assert "linux/s390x" in proc.stderr
    assert "linux/amd64, linux/arm64" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_inspect_config_of_an_index_by_platform(ob, multi_image):
    image, _ = multi_image
    proc = ob("inspect", image.ref, "--config", "--platform", "linux/arm64")
    assert_ok(proc)
    assert json.loads(proc.stdout)["architecture"] == "arm64"


# ---------------------------------------------------------------------------------------------
# Faults: a cut connection, a corrupted blob, 429
# ---------------------------------------------------------------------------------------------

def test_pull_resumes_after_a_cut_connection(ob, random_image, fault_proxy, tmp_path):
    image, info = random_image
    layer = info["layer"]
    proxy = fault_proxy(image.registry)
    cut_after = 8 << 20
    proxy.cut_blob_once(after=cut_after, min_size=16 << 20)
    out = tmp_path / "out"
    proc = ob("pull", proxy.ref(f"{image.name}:1"), "-o", f"oci:{out}:1")
    assert_ok(proc)
    assert printed_digest(proc) == image.digest
    assert read_blob(out, layer["digest"]) == read_blob(image.layout, layer["digest"])
    assert_same_blobs(image.layout, out)
    assert_store_is_sound(ob.store)
    gets = [e for e in proxy.events if e["method"] == "GET" and layer["digest"] in e["path"]]
    assert gets and gets[0]["fault"] == "cut", f"the proxy never cut the layer download: {proxy.events}"
    later = gets[1:]
    assert later, "no second GET of the layer after the cut"
    # Resumed, not restarted: the next GET asks for a range that starts inside what was received.
    rng = later[0]["range"] or ""
    assert rng.startswith("bytes=") and rng.endswith("-"), f"the retry did not resume: {later[0]}"
    start = int(rng[len("bytes="):-1])
    assert 0 < start <= cut_after, rng
    assert later[0]["status"] == 206


def test_corrupted_blob_is_refused_and_not_stored(ob, busybox_image, fault_proxy, tmp_path):
    _, manifest = read_layout_manifest(busybox_image.layout, "1")
    layer = manifest["layers"][0]["digest"]
    proxy = fault_proxy(busybox_image.registry)
    proxy.corrupt_blobs(min_size=4096)  # the layer (~1 MB), not the config
    out = tmp_path / "out"
    proc = ob("pull", proxy.ref(f"{busybox_image.name}:1"), "-o", f"oci:{out}:1")
    assert_fails(proc)
    assert "digest mismatch" in proc.stderr, proc.stderr
    assert layer in proc.stderr, proc.stderr
    assert any(e["fault"] == "corrupt" for e in proxy.events)
    assert not (ob.store / "blobs/sha256" / layer.split(":")[1]).exists()
    assert_store_is_sound(ob.store)
    assert not (out / "blobs/sha256" / layer.split(":")[1]).exists()


@pytest.mark.parametrize("what", ["manifest", "blob"])
def test_429_with_retry_after_is_retried(ob, busybox_image, fault_proxy, tmp_path, what):
    _, manifest = read_layout_manifest(busybox_image.layout, "1")
    layer = manifest["layers"][0]["digest"]
    proxy = fault_proxy(busybox_image.registry)
    pattern = r"^/v2/.+/manifests/" if what == "manifest" else rf"^/v2/.+/blobs/{layer}$"
    proxy.throttle_once(pattern, retry_after=1)
    out = tmp_path / "out"
    proc = ob("pull", proxy.ref(f"{busybox_image.name}:1"), "-o", f"oci:{out}:1")
    assert_ok(proc)
    assert printed_digest(proc) == busybox_image.digest
    assert_same_blobs(busybox_image.layout, out)
    throttled = [e for e in proxy.events if e["fault"] == "429"]
    assert len(throttled) == 1, proxy.events
    t429 = throttled[0]
    retries = [e for e in proxy.events if e["path"] == t429["path"] and e["t"] > t429["t"] and e["status"] < 400]
    assert retries, f"never retried {t429['path']}: {proxy.events}"
    assert retries[0]["t"] - t429["t"] >= 0.9, "Retry-After: 1 was not honoured"


# ---------------------------------------------------------------------------------------------
# build --push and registry bases
# ---------------------------------------------------------------------------------------------

def test_build_push_to_the_registry(ob, plain_registry, tmp_path):
    need("skopeo")
    proc = ob("build", HELLO, "--push", plain_registry.ref("built/hello:latest"))
    assert_ok(proc)
    digest = proc.stdout.split()[-1]
    assert digest.startswith("sha256:")
    info = plain_registry.skopeo_inspect("built/hello:latest")
    assert info["Digest"] == digest
    assert info["Labels"] == {"org.opencontainers.image.title": "hello"}
    config = plain_registry.skopeo_inspect("built/hello:latest", "--config")
    assert config["config"]["Cmd"] == ["/hello/hello.sh"]
    # The pushed image is the image a local build writes, byte for byte.
    local = ob("build", HELLO, "-o", f"oci:{tmp_path / 'local'}:latest")
    assert_ok(local)
    assert read_layout_manifest(tmp_path / "local", "latest")[0] == digest


def test_recipe_base_from_the_registry(ob, busybox_image, tmp_path):
    need("umoci")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "train.py").write_text("print('train')\n")
    os.chmod(ctx / "train.py", 0o644)
    recipe = write_recipe(ctx, f"""
[base]
ref = "{busybox_image.ref}"

[[step]]
copy = {{ from = "train.py", to = "/workspace/" }}

[config]
workdir = "/workspace"
""")
    out = tmp_path / "out"
    proc = ob("build", recipe, "-o", f"oci:{out}:dev")
    assert_ok(proc)
    _, base_manifest = read_layout_manifest(busybox_image.layout, "1")
    _, manifest = read_layout_manifest(out, "dev")
    assert manifest["layers"][: len(base_manifest["layers"])] == base_manifest["layers"]
    assert len(manifest["layers"]) == len(base_manifest["layers"]) + 1
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == busybox_image.ref
    config = json.loads(read_blob(out, manifest["config"]["digest"]))
    assert config["config"]["Cmd"] == ["/bin/sh"]  # kept from the base
    assert "NVIDIA_VISIBLE_DEVICES=all" in config["config"]["Env"]
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{out}:dev", bundle])
    assert (bundle / "rootfs/workspace/train.py").read_text() == "print('train')\n"
    assert (bundle / "rootfs/etc/base-release").read_text() == "base 1\n"


def test_recipe_base_from_an_index_follows_the_recipe_platform(ob, multi_image, tmp_path):
    image, multi = multi_image
    recipe = write_recipe(tmp_path / "ctx", f"""
[image]
platform = "linux/arm64"
[base]
ref = "{image.ref}"
[config]
cmd = ["/bin/true"]
""")
    out = tmp_path / "out"
    proc = ob("build", recipe, "-o", f"oci:{out}:x")
    assert_ok(proc)
    _, manifest = read_layout_manifest(out, "x")
    config = json.loads(read_blob(out, manifest["config"]["digest"]))
    assert config["architecture"] == "arm64"
    arm_manifest = json.loads(read_blob(image.layout, multi["arm64"]["digest"]))
    assert [l["digest"] for l in manifest["layers"]] == [l["digest"] for l in arm_manifest["layers"]]
