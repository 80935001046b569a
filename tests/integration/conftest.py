"""Shared fixtures for the integration tests.

Every test drives the real `ocibuild` binary (path in $OCIBUILD, else build/src/cli/ocibuild) and
checks its output with independent tools: oci-image-tool, skopeo, umoci, podman. Nothing here talks
to anything outside this machine.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def ocibuild_path() -> str:
    path = os.environ.get("OCIBUILD") or str(REPO / "build" / "src" / "cli" / "ocibuild")
    if not os.access(path, os.X_OK):
        pytest.exit(f"ocibuild binary not found at {path}; build first or set OCIBUILD", 2)
    return path


def run(cmd, check=True, **kw):
    """Runs a command, returns CompletedProcess with text output; failures show both streams."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def need(tool: str):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run the README's test command, which installs it")


class Ocibuild:
    def __init__(self, store: Path):
        self.binary = ocibuild_path()
        self.store = store

    def __call__(self, *args, check=True, env=None, **kw):
        full_env = dict(os.environ)
        full_env.pop("SOURCE_DATE_EPOCH", None)
        full_env["OCIBUILD_STORE"] = str(self.store)
        if env:
            full_env.update(env)
        return run([self.binary, *args], check=check, env=full_env, **kw)

    def build(self, recipe, *outputs, **kw):
        args = [str(recipe)]
        for o in outputs:
            args += ["-o", str(o)]
        return self(*args, **kw)


@pytest.fixture
def ocibuild(tmp_path):
    return Ocibuild(tmp_path / "store")


def write_recipe(directory: Path, text: str, name: str = "recipe.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def read_layout_manifest(layout: Path, tag: str):
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            raw = (layout / "blobs" / "sha256" / m["digest"].split(":")[1]).read_bytes()
            return m["digest"], json.loads(raw)
    raise AssertionError(f"no tag {tag} in {layout}/index.json: {index}")


def read_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory):
    """A busybox base image made with umoci (an independent tool), with an nvidia/cuda-like config."""
    need("umoci")
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.fail("busybox-static is not installed: run the README's test command")
    work = tmp_path_factory.mktemp("base")
    layout = work / "base-oci"
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:1"])
    bundle = work / "bundle"
    run(["umoci", "unpack", "--image", f"{layout}:1", bundle])
    root = bundle / "rootfs"
    for d in ["bin", "etc", "tmp", "root", "usr/bin", "var/log"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in ["sh", "ls", "cat", "echo", "id", "true", "false", "env", "mkdir", "rm", "chown", "chmod",
                   "touch", "sleep", "nc", "wget", "mv", "cp", "ln", "stat", "printf", "test", "grep", "head"]:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "base-release").write_text("base 1\n")
    (root / "var" / "log" / "old.log").write_text("from the base\n")
    run(["umoci", "repack", "--image", f"{layout}:1", bundle])
    run(["umoci", "config", "--image", f"{layout}:1", "--config.cmd", "/bin/sh",
         "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "--config.env", "CUDA_VERSION=12.4.1",
         "--config.env", "NVIDIA_VISIBLE_DEVICES=all",
         "--config.env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
         "--config.workingdir", "/", "--architecture", "amd64", "--os", "linux"])
    run(["umoci", "gc", "--layout", layout])
    return layout


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory):
    """podman as root on these machines needs runc, explicit ulimits and no network (peer-tools §6)."""
    need("podman")
    work = tmp_path_factory.mktemp("podman")
    conf = work / "containers.conf"
    conf.write_text("""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
""")
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    prefix = ["podman", "--root", work / "root", "--runroot", work / "runroot", "--storage-driver", "vfs"]
    return prefix, env
