"""Conda steps install a working environment: real artifacts (conda_packages) in a channel served over
loopback HTTP (conda_channel), placeholders replaced, noarch: python mapped with entry points that run,
conda-meta written, the layer reproducible, a tampered artifact refused.
"""
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from conda_channel import ChannelServer, make_channel
from conda_packages import PLACEHOLDER, File, Symlink
from conftest import Ocibuild, read_blob, read_layout_manifest, write_recipe

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

PACKAGES = [
    # A stand-in python: the entry point's shebang must find it at <prefix>/bin/python3.12.
    {"name": "python", "version": "3.12.1", "build": "h0_0_cpython",
     "files": {"bin/python3.12": File('#!/bin/sh\necho "python3.12 ran $1"\n', 0o755)}},
    {"name": "tool", "version": "1.0", "build": "pyh0_0", "noarch": "python", "subdir": "noarch",
     "depends": ["python >=3.12"], "entry_points": ["tool = tool.cli:main"],
     "files": {"site-packages/tool/__init__.py": "VERSION = '1.0'\n",
               "site-packages/tool/cli.py": "def main():\n    return 0\n"}},
    {"name": "libfoo", "version": "2.0", "build": "h1_0", "fn": "libfoo-2.0-h1_0.tar.bz2",
     "placeholder": {"bin/foo-config": "text", "lib/libfoo.so": "binary"},
     "files": {"bin/foo-config": File(f"#!/bin/sh\necho prefix={PLACEHOLDER}\n", 0o755),
               "lib/libfoo.so": b"\x7fELF" + PLACEHOLDER.encode() + b"/lib\0end",
               "lib/libfoo.so.2": Symlink("libfoo.so")}},
]

RECIPE = """[image]
name = "localhost/test/conda-install"
tags = ["1"]
platform = "linux/amd64"

[base]
ref = "{base}"

[[step]]
[step.conda]
prefix = "/opt/env"
channels = ["{url}"]
packages = ["tool", "libfoo >=2"]
{extra}"""


@pytest.fixture
def channel(tmp_path):
    folder = tmp_path / "channel"
    make_channel(folder, PACKAGES)
    with ChannelServer(folder) as server:
        server.folder_path = folder
        yield server


def layer_members(layout: Path, tag: str, index: int) -> dict:
    """name → (TarInfo, bytes or None) of one layer of the image."""
    _, manifest = read_layout_manifest(layout, tag)
    blob = read_blob(layout, manifest["layers"][index]["digest"])
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            out[member.name] = (member, tar.extractfile(member).read() if member.isfile() else None)
    return out


def test_conda_step_installs_a_working_environment(ocibuild, tmp_path, channel, busybox_layout):
    recipe = write_recipe(tmp_path / "ctx", RECIPE.format(
        base=f"oci:{busybox_layout}:1", url=channel.url, extra="""
[[step]]
run = "/opt/env/bin/tool > /tool.txt && /opt/env/bin/foo-config > /config.txt"
"""))
    layout = tmp_path / "out"
    ocibuild("build", recipe, "-o", f"oci:{layout}:1", env=EPOCH)

    run_layer = layer_members(layout, "1", -1)
    assert run_layer["tool.txt"][1] == b"python3.12 ran /opt/env/bin/tool\n"
    assert run_layer["config.txt"][1] == b"prefix=/opt/env\n"

    env = layer_members(layout, "1", -2)
    site = "opt/env/lib/python3.12/site-packages/tool"
    assert env[f"{site}/__init__.py"][1] == b"VERSION = '1.0'\n"
    assert not any(name.startswith("opt/env/site-packages") for name in env)
    entry, script = env["opt/env/bin/tool"]
    assert entry.mode & 0o777 == 0o775
    assert script.startswith(b"#!/opt/env/bin/python3.12\n")
    assert b"from tool.cli import main\n" in script
    library = env["opt/env/lib/libfoo.so"][1]
    assert library == b"\x7fELF/opt/env/lib\0" + b"\0" * (len(PLACEHOLDER) - len("/opt/env")) + b"end"
    link = env["opt/env/lib/libfoo.so.2"][0]
    assert link.issym() and link.linkname == "libfoo.so"

    history = env["opt/env/conda-meta/history"][1].decode()
    assert history.startswith("==> 1970-01-01 00:00:00 <==\n# cmd: ocibuild build\n# conda version: 4.0.0\n")
    assert f"+{channel.url}/noarch::tool-1.0-pyh0_0\n" in history
    assert '# update specs: ["tool", "libfoo >=2"]\n' in history
    meta = json.loads(env["opt/env/conda-meta/tool-1.0-pyh0_0.json"][1])
    assert meta["requested_specs"] == ["tool"]
    assert meta["noarch"] == "python"
    assert meta["url"] == f"{channel.url}/noarch/tool-1.0-pyh0_0.conda"
    assert meta["link"] == {"source": "/opt/env/pkgs/tool-1.0-pyh0_0", "type": 3}
    assert "lib/python3.12/site-packages/tool/cli.py" in meta["files"]
    assert "bin/tool" in meta["files"]
    libfoo = json.loads(env["opt/env/conda-meta/libfoo-2.0-h1_0.json"][1])
    config = next(p for p in libfoo["paths_data"]["paths"] if p["_path"] == "bin/foo-config")
    assert config["sha256_in_prefix"] == hashlib.sha256(env["opt/env/bin/foo-config"][1]).hexdigest()
    assert config["prefix_placeholder"] == PLACEHOLDER
    artifact = (channel.folder_path / "linux-64" / "libfoo-2.0-h1_0.tar.bz2").read_bytes()
    assert libfoo["sha256"] == hashlib.sha256(artifact).hexdigest()


def test_conda_layer_is_the_same_from_two_stores(tmp_path, channel):
    recipe = write_recipe(tmp_path / "ctx", RECIPE.format(base="scratch", url=channel.url, extra=""))
    digests = []
    for name in ("a", "b"):
        layout = tmp_path / f"out-{name}"
        Ocibuild(tmp_path / f"store-{name}")("build", recipe, "-o", f"oci:{layout}:1", env=EPOCH)
        _, manifest = read_layout_manifest(layout, "1")
        digests.append(manifest["layers"][-1]["digest"])
    assert digests[0] == digests[1]


def test_a_tampered_artifact_fails_the_build_naming_it(ocibuild, tmp_path, channel):
    artifact = channel.folder_path / "linux-64" / "libfoo-2.0-h1_0.tar.bz2"
    expected = hashlib.sha256(artifact.read_bytes()).hexdigest()
    tampered = artifact.read_bytes() + b"\0"
    artifact.write_bytes(tampered)
    recipe = write_recipe(tmp_path / "ctx", RECIPE.format(base="scratch", url=channel.url, extra=""))
    proc = ocibuild("build", recipe, "-o", f"oci:{tmp_path / 'out'}:1", check=False, env=EPOCH)
    assert proc.returncode != 0
    assert "package libfoo-2.0-h1_0" in proc.stderr
    assert f"{channel.url}/linux-64/libfoo-2.0-h1_0.tar.bz2" in proc.stderr
    assert f"sha256 mismatch: expected {expected}, got {hashlib.sha256(tampered).hexdigest()}" in proc.stderr
