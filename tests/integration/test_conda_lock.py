"""The lock file: `ocibuild lock`, `build` with and without `--locked`, `lock --update`, `export --explicit`.

Channels are generated here (conda_channel.make_channel) from real `.conda` artifacts (conda_packages) and served
over loopback HTTP (ChannelServer); registry bases come from the Distribution registry on loopback.
"""
import io
import json
import os
import re
import shutil
import tarfile
import tomllib
from pathlib import Path

import pytest

from conda_channel import ChannelServer, make_channel
from conftest import read_blob, read_layout_manifest, run, write_recipe
from registry import plain_registry  # noqa: F401 (fixture)


def package(name: str, version: str, depends=(), build="0") -> dict:
    """A package for make_channel with a real .conda artifact holding share/NAME/VERSION."""
    return {"name": name, "version": version, "build": build, "depends": list(depends),
            "files": {f"share/{name}/VERSION": f"{name} {version}\n"}}


def published(folder: Path, subdir: str = "linux-64") -> dict:
    """name → {version → repodata record with its fn} as the channel serves them."""
    repodata = json.loads((folder / subdir / "repodata.json").read_text())
    out = {}
    for fn, record in repodata["packages.conda"].items():
        out.setdefault(record["name"], {})[record["version"]] = dict(record, fn=fn)
    return out


FIRST_CHANNEL = [
    package("liba", "1.0"),
    package("libb", "1.0", ["liba >=1.0"]),
    package("app", "1.0", ["libb", "liba"]),
    package("tool", "1.0"),
]


RECIPE = """[image]
name = "localhost/test/conda"
tags = ["1"]
platform = "linux/amd64"

[base]
ref = "scratch"

[[step]]
[step.conda]
prefix = "/opt/env"
channels = ["{url}"]
packages = {packages}
"""


def conda_recipe(directory: Path, url: str, packages=("app",)) -> Path:
    return write_recipe(directory, RECIPE.format(url=url, packages=json.dumps(list(packages))))


@pytest.fixture
def channel(tmp_path):
    folder = tmp_path / "channel"
    make_channel(folder, FIRST_CHANNEL)
    with ChannelServer(folder) as server:
        yield server


def locked_versions(lock_file: Path, step: int = 1) -> dict:
    data = tomllib.loads(lock_file.read_text())
    entry = next(c for c in data["conda"] if c["step"] == step)
    return {p["name"]: p["version"] for p in entry["package"]}


def layer_files(layout: Path, tag: str) -> dict:
    """Path → bytes of the regular files in the image's last layer."""
    _, manifest = read_layout_manifest(layout, tag)
    blob = read_blob(layout, manifest["layers"][-1]["digest"])
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                out[member.name] = tar.extractfile(member).read()
    return out


def test_lock_writes_every_package_and_relocking_changes_nothing(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    text = lock_file.read_text()
    data = tomllib.loads(text)
    assert data["version"] == 1
    assert data["base"] == {"ref": "scratch", "platform": "linux/amd64"}
    [entry] = data["conda"]
    assert entry["step"] == 1
    assert entry["prefix"] == "/opt/env"
    assert entry["subdir"] == "linux-64"
    assert entry["channel_priority"] == "strict"
    assert entry["channels"] == [channel.url]
    assert entry["specs"] == ["app"]
    assert re.fullmatch(r"[0-9a-f]{64}", entry["inputs"])
    assert entry["virtual_packages"]["__unix"] == "0"
    assert "__cuda" not in entry["virtual_packages"]  # scratch sets no CUDA_VERSION
    served = published(channel.folder)
    assert [p["name"] for p in entry["package"]] == ["app", "liba", "libb"]
    for p in entry["package"]:
        want = served[p["name"]]["1.0"]
        assert p["url"] == f"{channel.url}/linux-64/{want['fn']}"
        assert (p["sha256"], p["md5"], p["size"]) == (want["sha256"], want["md5"], want["size"])
        assert (p["version"], p["build"], p["build_number"], p["subdir"]) == ("1.0", "0", 0, "linux-64")
        assert p["depends"] == want["depends"]
    # Diff-friendly: arrays one item per line.
    assert 'depends = [\n    "libb",\n    "liba",\n]\n' in text

    ocibuild("lock", recipe)
    assert lock_file.read_text() == text


def test_locked_build_uses_the_lock_and_leaves_it_alone(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    text = lock_file.read_text()
    layout = tmp_path / "out"
    proc = ocibuild("build", recipe, "--locked", "-o", f"oci:{layout}:1")
    assert "re-solved" not in proc.stderr
    assert lock_file.read_text() == text
    files = layer_files(layout, "1")
    assert files["opt/env/share/app/VERSION"] == b"app 1.0\n"
    assert files["opt/env/share/liba/VERSION"] == b"liba 1.0\n"
    assert "opt/env/share/tool/VERSION" not in files
    # The image records what was asked for.
    _, manifest = read_layout_manifest(layout, "1")
    config = json.loads(read_blob(layout, manifest["config"]["digest"]))
    assert config["history"][-1]["created_by"] == "ocibuild conda app"


def test_locked_build_fails_naming_the_step_when_the_recipe_changed(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    lock_file = tmp_path / "ctx" / "recipe.lock"

    proc = ocibuild("build", recipe, "--locked", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"{recipe}: --locked, but there is no lock file {lock_file}; run `ocibuild lock {recipe}`")

    ocibuild("lock", recipe)
    text = lock_file.read_text()
    conda_recipe(tmp_path / "ctx", channel.url, ["app", "tool"])
    proc = ocibuild("build", recipe, "--locked", check=False)
    assert proc.returncode == 1
    line = recipe.read_text().splitlines().index('packages = ["app", "tool"]') + 1
    assert re.search(
        rf"error: {re.escape(str(recipe))}:{line}:\d+: step 1 \(conda\): the lock file {re.escape(str(lock_file))} "
        rf"does not match: specs changed \(\"tool\" added\); run `ocibuild lock {re.escape(str(recipe))}`",
        proc.stderr), proc.stderr
    assert lock_file.read_text() == text  # --locked never writes

    # The base image's answer moved: a CUDA override is a virtual package the lock did not see.
    conda_recipe(tmp_path / "ctx", channel.url)
    proc = ocibuild("build", recipe, "--locked", check=False, env={"CONDA_OVERRIDE_CUDA": "12.4"})
    assert proc.returncode == 1
    assert "does not match: virtual packages changed (__cuda none -> 12.4)" in proc.stderr, proc.stderr


def test_build_without_locked_solves_again_and_rewrites_the_lock(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    conda_recipe(tmp_path / "ctx", channel.url, ["app", "tool"])
    layout = tmp_path / "out"
    proc = ocibuild("build", recipe, "-o", f"oci:{layout}:1")
    assert "lock: step 1 re-solved (packages changed)" in proc.stderr
    assert locked_versions(lock_file) == {"app": "1.0", "liba": "1.0", "libb": "1.0", "tool": "1.0"}
    assert layer_files(layout, "1")["opt/env/share/tool/VERSION"] == b"tool 1.0\n"
    # Now it matches again.
    ocibuild("build", recipe, "--locked")


def test_build_without_a_lock_writes_one(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    proc = ocibuild("build", recipe)
    assert "lock: step 1 solved (3 packages)" in proc.stderr
    first = (tmp_path / "ctx" / "recipe.lock").read_text()
    ocibuild("lock", recipe)
    assert (tmp_path / "ctx" / "recipe.lock").read_text() == first


def test_update_moves_only_the_named_package(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"

    # The channel gains newer versions of every package in the answer.
    newer = [package("liba", "1.1"), package("libb", "1.1", ["liba >=1.0"]), package("app", "1.1", ["libb", "liba"])]
    make_channel(channel.folder, FIRST_CHANNEL + newer)

    ocibuild("build", recipe, "--locked")  # the lock still holds: nothing moves by itself
    assert locked_versions(lock_file) == {"app": "1.0", "liba": "1.0", "libb": "1.0"}

    ocibuild("lock", recipe, "--update", "libb")
    assert locked_versions(lock_file) == {"app": "1.0", "liba": "1.0", "libb": "1.1"}

    proc = ocibuild("lock", recipe, "--update", "numpy", check=False)
    assert proc.returncode == 1
    assert f"--update numpy: no package named numpy in the lock file {lock_file}" in proc.stderr

    ocibuild("lock", recipe)
    assert locked_versions(lock_file) == {"app": "1.1", "liba": "1.1", "libb": "1.1"}


def test_export_explicit_lists_urls_with_hashes_in_dependency_order(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    served = published(channel.folder)
    expected = ("# This file may be used to create an environment using:\n"
                "# $ conda create --name <env> --file <this file>\n"
                "# platform: linux-64\n"
                "@EXPLICIT\n" +
                "".join(f"{channel.url}/linux-64/{served[n]['1.0']['fn']}#sha256:{served[n]['1.0']['sha256']}\n"
                        for n in ["liba", "libb", "app"]))
    assert ocibuild("export", recipe, "--explicit").stdout == expected
    out = tmp_path / "env.txt"
    ocibuild("export", recipe, "--explicit", "--step", "1", "-o", out)
    assert out.read_text() == expected

    proc = ocibuild("export", recipe, "--explicit", "--step", "2", check=False)
    assert proc.returncode == 2
    assert "--step 2: the lock file" in proc.stderr and "(it locks step 1)" in proc.stderr
    proc = ocibuild("export", recipe, check=False)
    assert proc.returncode == 2 and "export needs a format: --explicit" in proc.stderr


def test_a_broken_lock_file_is_reported_with_its_line(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    lines = lock_file.read_text().splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("sha256 = "))
    lines[at] = 'sha256 = "not-hex"'
    lock_file.write_text("\n".join(lines) + "\n")
    proc = ocibuild("build", recipe, check=False)
    assert proc.returncode == 1
    assert f"error: {lock_file}:{at + 1}:10: \"sha256\" must be 64 lower-case hex digits" in proc.stderr


BASE_RECIPE = """[image]
name = "localhost/test/pinned"
platform = "linux/amd64"

[base]
ref = "{ref}"

[config]
env = {{ GREETING = "hi" }}
"""


def test_lock_pins_the_registry_base_and_build_pulls_that_digest(ocibuild, tmp_path, plain_registry,
                                                                 busybox_layout):
    first = plain_registry.push_layout(f"oci:{busybox_layout}:1", "pin/base:1")
    recipe = write_recipe(tmp_path / "ctx", BASE_RECIPE.format(ref=plain_registry.ref("pin/base:1")))
    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    data = tomllib.loads(lock_file.read_text())
    assert data["base"] == {"ref": plain_registry.ref("pin/base:1"), "platform": "linux/amd64", "digest": first}
    text = lock_file.read_text()

    # The tag moves to another image; builds keep to the pinned one until the next `lock`.
    other = tmp_path / "other"
    shutil.copytree(busybox_layout, other)
    run(["umoci", "config", "--image", f"{other}:1", "--config.env", "MOVED=1"])
    second = plain_registry.push_layout(f"oci:{other}:1", "pin/base:1")
    assert second != first
    for extra in ([], ["--locked"]):
        layout = tmp_path / f"out{len(extra)}"
        ocibuild("build", recipe, *extra, "-o", f"oci:{layout}:1")
        _, manifest = read_layout_manifest(layout, "1")
        assert manifest["annotations"]["org.opencontainers.image.base.digest"] == first
        assert manifest["annotations"]["org.opencontainers.image.base.name"] == plain_registry.ref("pin/base:1")
        assert lock_file.read_text() == text

    ocibuild("lock", recipe)
    assert tomllib.loads(lock_file.read_text())["base"]["digest"] == second

    # Another base in the recipe: --locked refuses, a plain build re-pins.
    recipe.write_text(BASE_RECIPE.format(ref=plain_registry.ref("pin/base:2")))
    plain_registry.push_layout(f"oci:{busybox_layout}:1", "pin/base:2")
    proc = ocibuild("build", recipe, "--locked", check=False)
    assert proc.returncode == 1
    assert re.search(rf"{re.escape(str(recipe))}:6:\d+: base: the lock file .* does not match: base changed", proc.stderr)
    ocibuild("build", recipe)
    assert tomllib.loads(lock_file.read_text())["base"] == {
        "ref": plain_registry.ref("pin/base:2"), "platform": "linux/amd64", "digest": first}


def test_lock_pins_a_local_layout_base_digest_and_its_virtual_packages(ocibuild, tmp_path, busybox_layout, channel):
    # The busybox base says CUDA_VERSION=12.4.1 and has no glibc: that, not this host, is what is solved for.
    text = BASE_RECIPE.format(ref=f"oci:{busybox_layout}:1") + (
        f'\n[[step]]\n[step.conda]\nprefix = "/opt/env"\nchannels = ["{channel.url}"]\npackages = ["tool"]\n')
    recipe = write_recipe(tmp_path / "ctx", text)
    ocibuild("lock", recipe)
    index = json.loads((busybox_layout / "index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "1")
    data = tomllib.loads((tmp_path / "ctx" / "recipe.lock").read_text())
    assert data["base"]["digest"] == digest
    assert data["conda"][0]["virtual_packages"] == {"__archspec": "1=x86_64", "__cuda": "12.4", "__linux": "4.18",
                                                     "__unix": "0"}
    layout = tmp_path / "out"
    ocibuild("build", recipe, "--locked", "-o", f"oci:{layout}:1")
    assert layer_files(layout, "1")["opt/env/share/tool/VERSION"] == b"tool 1.0\n"
    # CONDA_OVERRIDE_CUDA="" removes __cuda, as in conda: the lock no longer matches.
    proc = ocibuild("build", recipe, "--locked", check=False, env={"CONDA_OVERRIDE_CUDA": ""})
    assert proc.returncode == 1
    assert "virtual packages changed (__cuda 12.4 -> none)" in proc.stderr, proc.stderr


def test_a_build_from_the_lock_gives_the_image_the_solving_build_gave(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    solved = ocibuild("build", recipe, "--store", tmp_path / "s1").stdout.strip()
    assert (tmp_path / "ctx" / "recipe.lock").exists()
    from_lock = ocibuild("build", recipe, "--locked", "--store", tmp_path / "s2").stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", solved)
    assert from_lock == solved


TWO_STEPS = """[image]
platform = "linux/amd64"

[base]
ref = "scratch"

[[step]]
[step.conda]
prefix = "/opt/a"
channels = ["{url}"]
packages = ["app"]

[[step]]
copy = {{ from = "notes.txt", to = "/notes.txt" }}

[[step]]
[step.conda]
prefix = "/opt/b"
channels = ["{url}"]
packages = ["tool"]
"""


def test_every_conda_step_is_locked_and_exported_by_its_step_number(ocibuild, tmp_path, channel):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "notes.txt").write_text("notes\n")
    recipe = write_recipe(tmp_path / "ctx", TWO_STEPS.format(url=channel.url))
    proc = ocibuild("lock", recipe, "--update", "tool", check=False)
    assert proc.returncode == 1
    assert f"there is no lock file {tmp_path / 'ctx' / 'recipe.lock'} to update" in proc.stderr

    ocibuild("lock", recipe)
    lock_file = tmp_path / "ctx" / "recipe.lock"
    assert locked_versions(lock_file, 1) == {"app": "1.0", "liba": "1.0", "libb": "1.0"}
    assert locked_versions(lock_file, 3) == {"tool": "1.0"}
    layout = tmp_path / "out"
    ocibuild("build", recipe, "--locked", "-o", f"oci:{layout}:1")
    last = layer_files(layout, "1")  # the second conda step's layer: only its own environment
    assert last["opt/b/share/tool/VERSION"] == b"tool 1.0\n"
    assert all(path.startswith("opt/b/") for path in last), sorted(last)
    assert any(path.startswith("opt/b/conda-meta/tool-1.0-0") for path in last), sorted(last)

    proc = ocibuild("export", recipe, "--explicit", check=False)
    assert proc.returncode == 2
    assert "locks conda steps 1, 3; choose one with --step N" in proc.stderr
    served = published(channel.folder)
    assert ocibuild("export", recipe, "--explicit", "--step", "3").stdout.splitlines()[-1] == (
        f"{channel.url}/linux-64/{served['tool']['1.0']['fn']}#sha256:{served['tool']['1.0']['sha256']}")


def test_channel_alias_and_mirror_flags_keep_the_canonical_urls_in_the_lock(ocibuild, tmp_path):
    folder = tmp_path / "served"
    make_channel(folder / "mychan", FIRST_CHANNEL)
    with ChannelServer(folder) as server:
        recipe = conda_recipe(tmp_path / "ctx", "mychan", ["tool"])
        ocibuild("lock", recipe, "--channel-alias", server.url)
        data = tomllib.loads((tmp_path / "ctx" / "recipe.lock").read_text())
        assert data["conda"][0]["channels"] == [f"{server.url}/mychan"]

        # Through a mirror: the lock names the original URLs; only fetching goes to the mirror.
        flags = ["--channel-alias", "https://conda.invalid", "--mirror", f"https://conda.invalid={server.url}"]
        ocibuild("lock", recipe, *flags)
        [entry] = tomllib.loads((tmp_path / "ctx" / "recipe.lock").read_text())["conda"]
        assert entry["channels"] == ["https://conda.invalid/mychan"]
        assert entry["package"][0]["url"] == "https://conda.invalid/mychan/linux-64/tool-1.0-0.conda"
        layout = tmp_path / "out"
        ocibuild("build", recipe, "--locked", *flags, "-o", f"oci:{layout}:1")
        assert layer_files(layout, "1")["opt/env/share/tool/VERSION"] == b"tool 1.0\n"
        assert "/mychan/linux-64/tool-1.0-0.conda" in server.paths(200)
        # Without the alias the recipe's channel is another URL: the lock is stale.
        proc = ocibuild("build", recipe, "--locked", check=False)
        assert proc.returncode == 1
        assert ('channels changed ("https://conda.anaconda.org/mychan" added, '
                '"https://conda.invalid/mychan" removed)') in proc.stderr, proc.stderr


def test_cuda_builds_follow_the_base_image_not_the_build_host(ocibuild, tmp_path, busybox_layout):
    # The GPU build wins on build number but needs __cuda: only a base that says CUDA_VERSION provides it.
    # This host has no GPU either way, so a CPU-only answer here would be the silent Dockerfile failure.
    folder = tmp_path / "channel"
    gpu = dict(package("torchy", "2.4.0", ["__cuda"], build="cuda124_0"), build_number=100)
    cpu = package("torchy", "2.4.0", build="cpu_0")
    make_channel(folder, [gpu, cpu])
    with ChannelServer(folder) as server:
        def lock_for(base: str, packages=("torchy",)):
            text = RECIPE.format(url=server.url, packages=json.dumps(list(packages))).replace(
                'ref = "scratch"', f'ref = "{base}"')
            recipe = write_recipe(tmp_path / base.replace("/", "_").replace(":", "_"), text)
            return recipe, ocibuild("lock", recipe, check=False)

        recipe, proc = lock_for(f"oci:{busybox_layout}:1")  # CUDA_VERSION=12.4.1
        assert proc.returncode == 0, proc.stderr
        entry = tomllib.loads(recipe.with_suffix(".lock").read_text())["conda"][0]
        assert [(p["name"], p["build"]) for p in entry["package"]] == [("torchy", "cuda124_0")]

        recipe, proc = lock_for("scratch")  # no CUDA_VERSION: the CPU build, never the GPU one
        assert proc.returncode == 0, proc.stderr
        entry = tomllib.loads(recipe.with_suffix(".lock").read_text())["conda"][0]
        assert [(p["name"], p["build"]) for p in entry["package"]] == [("torchy", "cpu_0")]

        # Asking for the GPU build on a base without CUDA says why instead of degrading.
        _, proc = lock_for("scratch", packages=("torchy * cuda*",))
        assert proc.returncode == 1
        assert "needs __cuda" in proc.stderr and "the base image sets no CUDA_VERSION" in proc.stderr, proc.stderr


def test_channel_credentials_are_used_but_never_written(ocibuild, tmp_path, channel):
    # A password in a channel URL authenticates every download, and appears nowhere a user shares:
    # not in the lock file, not in conda-meta inside the image, not in the output.
    url = channel.url.replace("http://", "http://alice:s3cret@")
    recipe = conda_recipe(tmp_path / "ctx", url)
    proc = ocibuild("lock", recipe)
    lock_text = (tmp_path / "ctx" / "recipe.lock").read_text()
    assert "s3cret" not in lock_text and "alice" not in lock_text
    assert channel.url + "/linux-64/" in lock_text
    layout = tmp_path / "out"
    build = ocibuild("build", recipe, "--locked", "-o", f"oci:{layout}:1")
    files = layer_files(layout, "1")
    assert files["opt/env/share/app/VERSION"] == b"app 1.0\n"
    assert not [name for name, data in files.items() if b"s3cret" in data], "a password reached the image"
    assert any(name.startswith("opt/env/conda-meta/app-1.0-") for name in files)
    for output in (proc.stdout, proc.stderr, build.stdout, build.stderr):
        assert "s3cret" not in output
    solved = ocibuild("solve", "app", "-c", url, "--json", "--store", tmp_path / "s2")
    assert "s3cret" not in solved.stdout + solved.stderr
    # Every request, the package downloads included, carried the credentials.
    expected = "Basic " + __import__("base64").b64encode(b"alice:s3cret").decode()
    assert channel.requests and all(h.get("authorization") == expected for (_, _, _, h) in channel.requests)


def test_glibc_comes_from_the_base_image_layers(ocibuild, tmp_path, busybox_layout):
    # A base whose only file is this machine's real libc.so.6 (made by ocibuild from scratch), and the
    # busybox base without any glibc: __glibc is what the image holds, never what the build host has.
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if not libc.exists():
        pytest.skip("needs an x86-64 glibc host")
    host_glibc = ".".join(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    tree = tmp_path / "ctx-base" / "tree"
    (tree / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy(libc, tree / "lib" / "x86_64-linux-gnu" / "libc.so.6")
    base_recipe = write_recipe(tmp_path / "ctx-base", RECIPE.split("[[step]]")[0] + '[[step]]\ncopy = { from = "tree/", to = "/" }\n')
    ocibuild("build", base_recipe, "-o", f"oci:{tmp_path / 'glibc-base'}:1")

    folder = tmp_path / "channel"
    make_channel(folder, [package("tool", "1.0", ["__glibc >=2.17"]), package("tool", "9.0", ["__glibc >=99.0"])])
    with ChannelServer(folder) as server:
        def lock(base: str, directory: str):
            text = RECIPE.format(url=server.url, packages='["tool"]').replace('ref = "scratch"', f'ref = "{base}"')
            recipe = write_recipe(tmp_path / directory, text)
            return recipe, ocibuild("lock", recipe, check=False)

        recipe, proc = lock(f"oci:{tmp_path / 'glibc-base'}:1", "ctx-glibc")
        assert proc.returncode == 0, proc.stderr
        entry = tomllib.loads(recipe.with_suffix(".lock").read_text())["conda"][0]
        assert entry["virtual_packages"]["__glibc"] == host_glibc
        assert [(p["name"], p["version"]) for p in entry["package"]] == [("tool", "1.0")]

        _, proc = lock(f"oci:{busybox_layout}:1", "ctx-busybox")
        assert proc.returncode == 1
        assert "needs __glibc" in proc.stderr and "the base image has no glibc" in proc.stderr, proc.stderr


def test_a_run_step_inserted_above_keeps_the_conda_answer(ocibuild, tmp_path, busybox_layout):
    # Adding an apt-style step before a conda step moves its number, not its packages.
    folder = tmp_path / "channel"
    make_channel(folder, FIRST_CHANNEL)
    with ChannelServer(folder) as server:
        text = RECIPE.format(url=server.url, packages='["app"]').replace('ref = "scratch"', f'ref = "oci:{busybox_layout}:1"')
        recipe = write_recipe(tmp_path / "ctx", text)
        ocibuild("lock", recipe)
        lock_file = tmp_path / "ctx" / "recipe.lock"
        before = tomllib.loads(lock_file.read_text())["conda"][0]
        assert before["step"] == 1
        # The channel moves on: a fresh solve would now pick libb 2.0.
        make_channel(folder, FIRST_CHANNEL + [package("libb", "2.0", ["liba >=1.0"])])
        moved = text.replace("[[step]]\n[step.conda]", '[[step]]\nrun = "echo hi > /etc/motd"\n\n[[step]]\n[step.conda]', 1)
        recipe.write_text(moved)
        ocibuild("build", recipe, "--locked", "-o", f"oci:{tmp_path / 'out'}:1")
        assert tomllib.loads(lock_file.read_text())["conda"][0]["step"] == 1  # --locked wrote nothing
        proc = ocibuild("build", recipe, "-o", f"oci:{tmp_path / 'out'}:2")
        after = tomllib.loads(lock_file.read_text())["conda"][0]
        assert after["step"] == 2
        assert after["package"] == before["package"], "the moved step was solved again"
        assert "uses the lock entry of step 1" in proc.stderr + proc.stdout


def test_a_bad_mirror_flag_is_a_usage_error_and_writes_nothing(ocibuild, tmp_path, channel):
    recipe = conda_recipe(tmp_path / "ctx", channel.url)
    proc = ocibuild("lock", recipe, "--mirror", "=http://x", check=False)
    assert proc.returncode == 2 and 'bad --mirror "=http://x": expected PREFIX=URL' in proc.stderr
    assert not (tmp_path / "ctx" / "recipe.lock").exists()
