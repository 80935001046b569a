"""Build recipes and check the results with independent tools, as a user would."""
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import need, read_blob, read_layout_manifest, run, write_recipe

HELLO = Path(__file__).resolve().parents[2] / "recipes" / "hello.toml"


def make_context(root: Path):
    """A build context with every kind of entry a layer must carry faithfully."""
    app = root / "app"
    app.mkdir(parents=True)
    (app / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(app / "run.sh", 0o755)
    (app / "secret").write_text("s3cret\n")
    os.chmod(app / "secret", 0o600)
    (app / "suid").write_text("suid\n")
    os.chmod(app / "suid", 0o4755)
    (app / "sgid-dir").mkdir()
    os.chmod(app / "sgid-dir", 0o2775)
    (app / "sticky").mkdir()
    os.chmod(app / "sticky", 0o1777)
    os.symlink("run.sh", app / "link")
    os.symlink("chain2", app / "chain1")
    os.symlink("run.sh", app / "chain2")
    os.link(app / "run.sh", app / "hard")
    deep = app / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_text("long path\n")
    os.chmod(deep / ("f" * 120), 0o644)
    for d in [app, app / ("d" * 60), deep]:
        os.chmod(d, 0o755)
    os.chmod(app, 0o750)
    capped = app / "capped"
    capped.write_bytes(b"\x7fELF fake\n")
    os.chmod(capped, 0o755)
    run(["setcap", "cap_net_bind_service=+ep", capped])
    (root / "notes.txt").write_text("notes\n")
    os.chmod(root / "notes.txt", 0o644)
    owned = root / "owned"
    owned.mkdir()
    os.chmod(owned, 0o755)
    (owned / "data").write_text("data\n")
    os.chmod(owned / "data", 0o644)


RECIPE = """
[image]
name = "localhost/test/tree"
tags = ["1"]

[base]
ref = "scratch"

[[step]]
copy = { from = "app/", to = "/opt/app" }

[[step]]
copy = { from = "notes.txt", to = "/etc/notes.txt", mode = 0o640, owner = "1000:1000" }

[[step]]
[step.copy]
from = "owned"
to = "/srv/owned"
owner = "42:43"

[config]
env = { APP_HOME = "/opt/app" }
entrypoint = ["/opt/app/run.sh"]
cmd = ["--help"]
workdir = "/opt/app"
user = "1000:1000"
labels = { "org.example.team" = "ml" }
ports = ["8080", "53/udp"]
volumes = ["/data"]
stop_signal = "SIGINT"
"""


def tree_of(root: Path):
    """path → (kind, mode, uid, gid, link target or content) for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, p.read_bytes())
    return out


@pytest.fixture
def tree_image(ocibuild, tmp_path):
    ctx = tmp_path / "ctx"
    make_context(ctx)
    recipe = write_recipe(ctx, RECIPE)
    layout = tmp_path / "layout"
    proc = ocibuild.build(recipe, f"oci:{layout}:1")
    return layout, proc.stdout.strip()


def test_oci_image_tool_validates_the_layout(tree_image):
    need("oci-image-tool")
    layout, _ = tree_image
    proc = run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=1", layout])
    assert "Validation succeeded" in proc.stdout + proc.stderr


def test_skopeo_inspect_shows_the_config(tree_image):
    need("skopeo")
    layout, digest = tree_image
    info = json.loads(run(["skopeo", "inspect", f"oci:{layout}:1"]).stdout)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"] == {"org.example.team": "ml"}
    assert info["Env"] == ["APP_HOME=/opt/app"]
    assert len(info["Layers"]) == 3
    config = json.loads(run(["skopeo", "inspect", "--config", f"oci:{layout}:1"]).stdout)
    c = config["config"]
    assert c["Entrypoint"] == ["/opt/app/run.sh"]
    assert c["Cmd"] == ["--help"]
    assert c["WorkingDir"] == "/opt/app"
    assert c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT"
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert [h["created_by"] for h in config["history"]][:3] == [
        "ocibuild copy app/ /opt/app", "ocibuild copy notes.txt /etc/notes.txt", "ocibuild copy owned /srv/owned"]


def test_umoci_unpack_gives_exactly_the_requested_tree(tree_image, tmp_path):
    need("umoci")
    layout, _ = tree_image
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{layout}:1", bundle])
    got = tree_of(bundle / "rootfs")
    deep = "opt/app/" + "d" * 60 + "/" + "e" * 60
    expected = {
        "opt": ("dir", 0o755, 0, 0, None),
        "opt/app": ("dir", 0o750, 0, 0, None),
        "opt/app/run.sh": ("file", 0o755, 0, 0, b"#!/bin/sh\necho run\n"),
        "opt/app/hard": ("file", 0o755, 0, 0, b"#!/bin/sh\necho run\n"),
        "opt/app/secret": ("file", 0o600, 0, 0, b"s3cret\n"),
        "opt/app/suid": ("file", 0o4755, 0, 0, b"suid\n"),
        "opt/app/capped": ("file", 0o755, 0, 0, b"\x7fELF fake\n"),
        "opt/app/sgid-dir": ("dir", 0o2775, 0, 0, None),
        "opt/app/sticky": ("dir", 0o1777, 0, 0, None),
        "opt/app/link": ("symlink", 0o777, 0, 0, "run.sh"),
        "opt/app/chain1": ("symlink", 0o777, 0, 0, "chain2"),
        "opt/app/chain2": ("symlink", 0o777, 0, 0, "run.sh"),
        "opt/app/" + "d" * 60: ("dir", 0o755, 0, 0, None),
        deep: ("dir", 0o755, 0, 0, None),
        deep + "/" + "f" * 120: ("file", 0o644, 0, 0, b"long path\n"),
        "etc": ("dir", 0o755, 0, 0, None),
        "etc/notes.txt": ("file", 0o640, 1000, 1000, b"notes\n"),
        "srv": ("dir", 0o755, 0, 0, None),
        "srv/owned": ("dir", 0o755, 42, 43, None),
        "srv/owned/data": ("file", 0o644, 42, 43, b"data\n"),
    }
    assert got == expected
    rootfs = bundle / "rootfs"
    # Hard links stay hard links; file capabilities survive.
    assert os.stat(rootfs / "opt/app/run.sh").st_ino == os.stat(rootfs / "opt/app/hard").st_ino
    caps = run(["getcap", rootfs / "opt/app/capped"]).stdout
    assert "cap_net_bind_service" in caps
    # Every file time is the build epoch (0 unless SOURCE_DATE_EPOCH says otherwise).
    assert {os.lstat(rootfs / p).st_mtime for p in expected} == {0}


def test_layers_are_deterministic_tar(tree_image):
    layout, _ = tree_image
    _, manifest = read_layout_manifest(layout, "1")
    import gzip
    import io
    import tarfile
    raw = gzip.decompress(read_blob(layout, manifest["layers"][0]["digest"]))
    names = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar:
            names.append(member.name.rstrip("/"))
            assert member.uname == "" and member.gname == ""
            assert member.mtime == 0
    assert names == sorted(names, key=lambda n: n.encode())
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_docker_archive_loads_in_podman(ocibuild, tmp_path, podman_env):
    prefix, env = podman_env
    archive = tmp_path / "hello-docker.tar"
    digest = ocibuild.build(HELLO, f"docker-archive:{archive}").stdout.strip()
    proc = run(prefix + ["load", "-i", archive], env=env)
    assert "Loaded image: localhost/ocibuild/hello:latest" in proc.stdout
    images = json.loads(run(prefix + ["images", "--format", "json"], env=env).stdout)
    assert any("localhost/ocibuild/hello:latest" in (i.get("Names") or []) for i in images)
    inspect = json.loads(run(prefix + ["image", "inspect", "localhost/ocibuild/hello:latest"], env=env).stdout)
    assert inspect[0]["Config"]["Cmd"] == ["/hello/hello.sh"]
    assert digest.startswith("sha256:")


def test_docker_archive_with_explicit_name(ocibuild, tmp_path, podman_env):
    prefix, env = podman_env
    archive = tmp_path / "named.tar"
    ocibuild.build(HELLO, f"docker-archive:{archive}:example.test/team/hello:v2")
    manifest = json.loads(subprocess.run(["tar", "-xOf", archive, "manifest.json"], capture_output=True, check=True).stdout)
    assert manifest[0]["RepoTags"] == ["example.test/team/hello:v2"]
    proc = run(prefix + ["load", "-i", archive], env=env)
    assert "example.test/team/hello:v2" in proc.stdout


def test_oci_archive_is_readable_by_skopeo(ocibuild, tmp_path):
    need("skopeo")
    archive = tmp_path / "hello.tar"
    digest = ocibuild.build(HELLO, f"oci-archive:{archive}:v1").stdout.strip()
    info = json.loads(run(["skopeo", "inspect", f"oci-archive:{archive}:v1"]).stdout)
    assert info["Digest"] == digest
    copy = tmp_path / "copied"
    run(["skopeo", "copy", f"oci-archive:{archive}:v1", f"oci:{copy}:v1"])
    got_digest, _ = read_layout_manifest(copy, "v1")
    assert got_digest == digest  # skopeo kept our manifest byte for byte


def test_local_layout_base_keeps_base_layers_and_config(ocibuild, tmp_path, busybox_layout):
    need("umoci")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "train.py").write_text("print('train')\n")
    os.chmod(ctx / "train.py", 0o644)
    recipe = write_recipe(ctx, f"""
[base]
ref = "oci:{busybox_layout}:1"

[[step]]
copy = {{ from = "train.py", to = "/workspace/" }}

[config]
env = {{ PATH = "/opt/conda/bin:${{PATH}}", CUDA_HOME = "/usr/local/cuda-${{CUDA_VERSION}}" }}
workdir = "/workspace"
""")
    out = tmp_path / "out"
    ocibuild.build(recipe, f"oci:{out}:dev")
    _, base_manifest = read_layout_manifest(busybox_layout, "1")
    _, manifest = read_layout_manifest(out, "dev")
    assert manifest["layers"][: len(base_manifest["layers"])] == base_manifest["layers"]
    assert len(manifest["layers"]) == len(base_manifest["layers"]) + 1
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == f"oci:{busybox_layout}:1"
    config = json.loads(read_blob(out, manifest["config"]["digest"]))
    env = config["config"]["Env"]
    assert env[0] == "PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "NVIDIA_VISIBLE_DEVICES=all" in env and "CUDA_HOME=/usr/local/cuda-12.4.1" in env
    assert config["config"]["Cmd"] == ["/bin/sh"]  # kept from the base
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{out}:dev", bundle])
    assert (bundle / "rootfs/workspace/train.py").read_text() == "print('train')\n"
    assert (bundle / "rootfs/etc/base-release").read_text() == "base 1\n"
    assert os.readlink(bundle / "rootfs/bin/sh") == "busybox"


def test_oci_archive_base(ocibuild, tmp_path, busybox_layout):
    need("skopeo")
    archive = tmp_path / "base.tar"
    run(["skopeo", "copy", f"oci:{busybox_layout}:1", f"oci-archive:{archive}:base"])
    ctx = tmp_path / "ctx"
    recipe = write_recipe(ctx, f"""
[base]
ref = "oci-archive:{archive}:base"
[config]
cmd = ["/bin/true"]
""")
    out = tmp_path / "out"
    ocibuild.build(recipe, f"oci:{out}:x")
    _, base_manifest = read_layout_manifest(busybox_layout, "1")
    _, manifest = read_layout_manifest(out, "x")
    assert [l["digest"] for l in manifest["layers"]] == [l["digest"] for l in base_manifest["layers"]]
    run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=x", out])


def test_corrupt_base_blob_is_refused_and_not_stored(ocibuild, tmp_path, busybox_layout):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(busybox_layout, broken)
    _, manifest = read_layout_manifest(broken, "1")
    layer = broken / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    os.chmod(layer, 0o644)
    data = bytearray(layer.read_bytes())
    data[100] ^= 0xFF
    layer.write_bytes(bytes(data))
    recipe = write_recipe(tmp_path / "ctx", f'[base]\nref = "oci:{broken}:1"\n')
    proc = ocibuild.build(recipe, check=False)
    assert proc.returncode == 1
    assert "digest mismatch: expected " + manifest["layers"][0]["digest"] in proc.stderr
    assert not (ocibuild.store / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).exists()


def test_wrong_platform_base_is_refused(ocibuild, tmp_path, busybox_layout):
    recipe = write_recipe(tmp_path / "ctx", f"""
[image]
platform = "linux/arm64"
[base]
ref = "oci:{busybox_layout}:1"
""")
    proc = ocibuild.build(recipe, check=False)
    assert proc.returncode == 1
    assert "base image is linux/amd64 but the recipe builds linux/arm64" in proc.stderr


def test_copy_into_an_existing_base_directory_keeps_its_mode(ocibuild, tmp_path, busybox_layout):
    """Copying to /tmp/x must not reset the base's /tmp (1777) to a plain 0755 directory."""
    need("umoci")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "x").write_text("x\n")
    recipe = write_recipe(ctx, f"""
[base]
ref = "oci:{busybox_layout}:1"

[[step]]
copy = {{ from = "x", to = "/tmp/x" }}

[[step]]
copy = {{ from = "x", to = "/new/dir/x" }}
""")
    out = tmp_path / "out"
    ocibuild.build(recipe, f"oci:{out}:1")
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{out}:1", bundle])
    rootfs = bundle / "rootfs"
    assert stat.S_IMODE(os.lstat(rootfs / "tmp").st_mode) == 0o1777
    assert (rootfs / "tmp/x").read_text() == "x\n"
    assert (rootfs / "new/dir/x").read_text() == "x\n"
    assert stat.S_ISDIR(os.lstat(rootfs / "new/dir").st_mode)
