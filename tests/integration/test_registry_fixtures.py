"""Self-checks of the registry fixtures (registry.py) with independent clients only: curl and skopeo.

These do not run ocibuild. If one fails, the failures in test_registry.py are not ocibuild's."""
import base64
import json
import subprocess

import pytest

from conftest import need, read_layout_manifest, run
from registry import (MANIFEST_ACCEPT, blobs_of, fault_proxy, make_multiplatform_layout,  # noqa: F401
                      make_random_image, plain_registry, sha256_hex, tls_registry, token_registry)


def test_plain_registry_round_trip_with_skopeo(plain_registry, busybox_layout, tmp_path):
    need("skopeo")
    status, _, body = plain_registry.curl("/v2/")
    assert status == 200 and body == b"{}"
    digest = plain_registry.push_layout(f"oci:{busybox_layout}:1", "fixture/busybox:1")
    source_digest, _ = read_layout_manifest(busybox_layout, "1")
    assert digest == source_digest
    raw, ctype, served = plain_registry.manifest("fixture/busybox", "1")
    assert ctype == "application/vnd.oci.image.manifest.v1+json" and served == digest
    assert "sha256:" + sha256_hex(raw) == digest
    assert raw == (busybox_layout / "blobs/sha256" / digest.split(":")[1]).read_bytes()
    assert plain_registry.skopeo_inspect("fixture/busybox:1")["Digest"] == digest
    back = tmp_path / "back"
    run(["skopeo", "copy", *plain_registry.skopeo_src(), f"docker://{plain_registry.ref('fixture/busybox:1')}",
         f"oci:{back}:1"])
    src = blobs_of(busybox_layout)
    got = blobs_of(back)
    assert set(src) <= set(got) and all(got[h] == src[h] for h in src)
    # Range requests work (what a resuming client relies on).
    manifest = json.loads(raw)
    layer = manifest["layers"][0]["digest"]
    status, hdrs, part = plain_registry.curl(f"/v2/fixture/busybox/blobs/{layer}", headers=["Range: bytes=100-"])
    assert status == 206 and part == src[layer.split(":")[1]][100:]


def test_tls_registry_needs_ca_and_credentials(tls_registry, busybox_layout):
    need("skopeo")
    reg = tls_registry
    assert (reg.cert_dir / reg.host / "ca.crt").is_file()
    assert reg.curl("/v2/", creds=False)[0] == 401
    status, hdrs, _ = reg.curl("/v2/", creds=False)
    assert hdrs["www-authenticate"].startswith("Basic realm=")
    assert reg.curl("/v2/")[0] == 200
    # Without the CA, TLS verification fails (curl exit 60).
    proc = subprocess.run(["curl", "-sS", "-u", reg.creds, reg.url + "/v2/"], capture_output=True, text=True)
    assert proc.returncode == 60, proc.stderr
    digest = reg.push_layout(f"oci:{busybox_layout}:1", "fixture/busybox:1")
    assert reg.skopeo_inspect("fixture/busybox:1")["Digest"] == digest
    proc = run(["skopeo", "inspect", *reg.skopeo_inspect_flags(creds=False),
                f"docker://{reg.ref('fixture/busybox:1')}"], check=False)
    assert proc.returncode != 0 and ("unauthorized" in proc.stderr.lower() or "401" in proc.stderr)
    proc = run(["skopeo", "inspect", *reg.skopeo_inspect_flags(creds=False), f"--creds={reg.user}:wrong",
                f"docker://{reg.ref('fixture/busybox:1')}"], check=False)
    assert proc.returncode != 0


def test_token_registry_policy(token_registry, busybox_layout):
    need("skopeo")
    reg = token_registry
    ts = reg.token_server
    status, hdrs, _ = reg.curl("/v2/", token=False)
    assert status == 401
    challenge = hdrs["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{ts.realm}",service="ocibuild-test-registry"')
    # Push with credentials: public/ and private/.
    public = reg.push_layout(f"oci:{busybox_layout}:1", "public/fixture:1")
    private = reg.push_layout(f"oci:{busybox_layout}:1", "private/fixture:1")
    assert public == private
    assert any(r["user"] == reg.user and any("push" in g["actions"] for g in r["granted"]) for r in ts.requests)
    # Anonymous pull of public/ works (curl, then skopeo); of private/ it does not.
    raw, _, served = reg.manifest("public/fixture", "1")
    assert served == public
    status, _, _ = reg.curl("/v2/public/fixture/manifests/1", creds=False, headers=[f"Accept: {MANIFEST_ACCEPT}"])
    assert status == 200
    status, _, _ = reg.curl("/v2/private/fixture/manifests/1", creds=False, headers=[f"Accept: {MANIFEST_ACCEPT}"])
    assert status == 401
    info = json.loads(run(["skopeo", "inspect", *reg.skopeo_inspect_flags(creds=False),
                           f"docker://{reg.ref('public/fixture:1')}"]).stdout)
    assert info["Digest"] == public
    proc = run(["skopeo", "inspect", *reg.skopeo_inspect_flags(creds=False),
                f"docker://{reg.ref('private/fixture:1')}"], check=False)
    assert proc.returncode != 0
    # Anonymous push is denied, even to public/.
    proc = run(["skopeo", "copy", "--retry-times=0", *reg.skopeo_dest(creds=False), f"oci:{busybox_layout}:1",
                f"docker://{reg.ref('public/anon:1')}"], check=False)
    assert proc.returncode != 0
    assert not reg.has_manifest("public/anon", "1")
    # Wrong password: the token server says 401.
    proc = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{reg.user}:nope",
                           f"{ts.realm}?service=ocibuild-test-registry&scope=repository:public/fixture:pull"],
                          capture_output=True, text=True)
    assert proc.stdout == "401"
    # The token: RS256 with x5c, the granted access only.
    proc = subprocess.run(["curl", "-sS", "--fail",
                           f"{ts.realm}?service=ocibuild-test-registry&scope=repository:private/fixture:pull,push"],
                          capture_output=True, text=True, check=True)
    body = json.loads(proc.stdout)
    assert set(body) >= {"token", "access_token", "expires_in", "issued_at"}
    header, claims, _ = body["token"].split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(header)))["alg"] == "RS256"
    assert json.loads(base64.urlsafe_b64decode(pad(claims)))["access"] == [
        {"type": "repository", "name": "private/fixture", "actions": []}]


def test_multiplatform_layout_pushes_as_an_index(plain_registry, busybox_layout, tmp_path):
    need("skopeo")
    multi = make_multiplatform_layout(busybox_layout, tmp_path / "multi")
    digest = plain_registry.push_layout(f"oci:{tmp_path / 'multi'}:multi", "fixture/multi:1", all_images=True)
    assert digest == multi["index"]["digest"]
    raw, ctype, _ = plain_registry.manifest("fixture/multi", "1")
    assert raw == multi["index_bytes"] and ctype == "application/vnd.oci.image.index.v1+json"
    arm = plain_registry.skopeo_inspect("fixture/multi:1", "--override-arch=arm64", "--config")
    assert arm["architecture"] == "arm64"


def test_proxy_cut_and_resume_with_curl(plain_registry, fault_proxy, tmp_path):
    layout = tmp_path / "big"
    image = make_random_image(layout, "1", 3 << 20)
    plain_registry.push_layout(f"oci:{layout}:1", "fixture/cut:1")
    proxy = fault_proxy(plain_registry)
    proxy.cut_blob_once(after=1 << 20, min_size=2 << 20)
    url = f"{proxy.url}/v2/fixture/cut/blobs/{image['layer']['digest']}"
    first = subprocess.run(["curl", "-sS", url], capture_output=True)
    assert first.returncode == 18, first.stderr  # "transfer closed with N bytes remaining"
    assert len(first.stdout) == 1 << 20
    rest = subprocess.run(["curl", "-sS", "--fail", "-H", f"Range: bytes={len(first.stdout)}-", url],
                          capture_output=True, check=True)
    assert "sha256:" + sha256_hex(first.stdout + rest.stdout) == image["layer"]["digest"]
    assert [(e["fault"], e["status"], e["range"]) for e in proxy.events] == [
        ("cut", 200, None), (None, 206, f"bytes={1 << 20}-")]
    # skopeo pushes and pulls through the proxy unharmed (PATCH/PUT/Location pass through).
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{proxy.ref('fixture/via:1')}"])
    run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{proxy.ref('fixture/via:1')}",
         f"oci:{tmp_path / 'back'}:1"])
    assert blobs_of(tmp_path / "back")[image["layer"]["digest"].split(":")[1]] == \
        blobs_of(layout)[image["layer"]["digest"].split(":")[1]]


def test_proxy_corrupts_and_throttles(plain_registry, busybox_layout, fault_proxy):
    digest = plain_registry.push_layout(f"oci:{busybox_layout}:1", "fixture/busybox:1")
    _, manifest = read_layout_manifest(busybox_layout, "1")
    layer = manifest["layers"][0]["digest"]
    proxy = fault_proxy(plain_registry)
    proxy.corrupt_blobs(min_size=4096)
    url = f"{proxy.url}/v2/fixture/busybox/blobs/{layer}"
    got = subprocess.run(["curl", "-sS", "--fail", url], capture_output=True, check=True).stdout
    assert len(got) == manifest["layers"][0]["size"] and "sha256:" + sha256_hex(got) != layer
    config = subprocess.run(["curl", "-sS", "--fail", f"{proxy.url}/v2/fixture/busybox/blobs/"
                             f"{manifest['config']['digest']}"], capture_output=True, check=True).stdout
    assert "sha256:" + sha256_hex(config) == manifest["config"]["digest"]  # small blobs untouched

    proxy.throttle_once()
    murl = f"{proxy.url}/v2/fixture/busybox/manifests/1"
    first = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", f"Accept: {MANIFEST_ACCEPT}", murl],
                           capture_output=True, text=True)
    assert first.stdout.startswith("HTTP/1.1 429") and "Retry-After: 1" in first.stdout
    second = subprocess.run(["curl", "-sS", "--fail", "-H", f"Accept: {MANIFEST_ACCEPT}", murl], capture_output=True)
    assert "sha256:" + sha256_hex(second.stdout) == digest


@pytest.mark.parametrize("setup", ["tls", "token"])
def test_skopeo_login_against_fixture(setup, tls_registry, token_registry, tmp_path):
    """skopeo login (containers auth.json) works against both auth setups: the format ocibuild must write."""
    need("skopeo")
    reg = tls_registry if setup == "tls" else token_registry
    authfile = tmp_path / "auth.json"
    flags = [f"--cert-dir={reg.cert_dir / reg.host}"] if reg.tls else ["--tls-verify=false"]
    run(["skopeo", "login", *flags, "--authfile", authfile, "-u", reg.user, "--password-stdin", reg.host],
        input=reg.password + "\n")
    auth = json.loads(authfile.read_text())["auths"][reg.host]["auth"]
    assert base64.b64decode(auth).decode() == reg.creds
