"""`ocibuild solve`: conda's choices on channels made here, served over HTTP on 127.0.0.1 or read
from a folder. Each test builds the smallest channel that shows one rule."""
import hashlib
import json
import os

import pytest

from conda_channel import ChannelServer, make_channel
from conftest import ocibuild_path, run

PLATFORM = ["--platform", "linux/amd64"]


class Solver:
    """Runs `ocibuild solve` with its own store and no CONDA_OVERRIDE_* from the outer environment."""

    def __init__(self, tmp_path):
        self.binary = ocibuild_path()
        self.store = tmp_path / "store"

    def __call__(self, *args, env=None, check=True):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA_OVERRIDE_")}
        full_env["OCIBUILD_STORE"] = str(self.store)
        full_env.update(env or {})
        return run([self.binary, "solve", *PLATFORM, *args], check=check, env=full_env)

    def answer(self, *args, env=None):
        """{name: record} of a --json solve."""
        proc = self(*args, "--json", env=env)
        records = json.loads(proc.stdout)
        names = [r["name"] for r in records]
        assert names == sorted(names), names
        return {r["name"]: r for r in records}

    def fails(self, *args, env=None):
        proc = self(*args, env=env, check=False)
        assert proc.returncode == 1, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr, proc.stderr
        return proc.stderr


@pytest.fixture
def solve(tmp_path):
    return Solver(tmp_path)


@pytest.fixture(params=["http", "folder"])
def channels(request, tmp_path):
    """channels(name, packages) → what to pass to -c, served over HTTP or as a local folder."""
    root = tmp_path / "channels"
    root.mkdir()
    if request.param == "folder":
        yield lambda name, packages: str(make_channel(root / name, packages))
        return
    with ChannelServer(root) as server:
        def served(name, packages):
            make_channel(root / name, packages)
            return f"{server.url}/{name}"
        yield served


def versions(solve, channel, spec):
    return solve.answer(spec, "-c", channel)["foo"]["version"]


def test_highest_version_by_conda_order(solve, channels):
    chan = channels("c", [{"name": "foo", "version": v} for v in
                          ["1.0", "1.9", "1.10", "1.10.1", "2.0dev1", "2.0rc1", "1.2.post1", "1.2"]])
    # 1.10 > 1.9 (numbers, not strings); 2.0rc1 > 2.0dev1 (dev sorts before other strings).
    assert versions(solve, chan, "foo") == "2.0rc1"
    assert versions(solve, chan, "foo <2") == "2.0rc1"  # conda: a pre-release of 2 is below 2
    assert versions(solve, chan, "foo <1.11") == "1.10.1"
    assert versions(solve, chan, "foo 1.9.*") == "1.9"
    assert versions(solve, chan, "foo >=1.2,<1.10") == "1.9"
    assert versions(solve, chan, "foo 1.2.*") == "1.2.post1"  # post releases follow their release
    assert versions(solve, chan, "foo=1.10") == "1.10.1"  # fuzzy: 1.10.*
    assert versions(solve, chan, "foo ==1.10") == "1.10"


def test_epoch_and_build_number(solve, channels):
    chan = channels("c", [
        {"name": "foo", "version": "9.9"},
        {"name": "foo", "version": "1!0.1"},
        {"name": "bar", "version": "1.0", "build": "h1_0", "build_number": 0},
        {"name": "bar", "version": "1.0", "build": "h1_3", "build_number": 3},
        {"name": "bar", "version": "1.0", "build": "h1_1", "build_number": 1},
    ])
    got = solve.answer("foo", "bar", "-c", chan)
    assert got["foo"]["version"] == "1!0.1"  # an epoch outranks any version without one
    assert (got["bar"]["build"], got["bar"]["build_number"]) == ("h1_3", 3)


def test_dependencies_are_resolved_and_table_is_printed(solve, channels):
    chan = channels("c", [
        {"name": "app", "version": "1.0", "depends": ["lib >=1.1", "tool"], "size": 2_000_000},
        {"name": "lib", "version": "1.0", "size": 1_000_000},
        {"name": "lib", "version": "1.1", "size": 1_500_000},
        {"name": "tool", "version": "3", "subdir": "noarch", "noarch": "generic", "size": 500_000},
    ])
    proc = solve("app", "-c", chan)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "version", "build", "channel", "size"]
    rows = [line.split() for line in lines[1:-1]]
    assert [r[0] for r in rows] == ["app", "lib", "tool"]
    assert [r[1] for r in rows] == ["1.0", "1.1", "3"]
    assert all(r[3] == chan for r in rows)
    assert rows[0][-2:] == ["2.0", "MB"]
    assert lines[-1] == "3 packages, 4.0 MB"
    assert "solve: loaded 4 records in " in proc.stderr and " ms, solved in " in proc.stderr


def test_json_output_shape(solve, channels):
    chan = channels("c", [
        {"name": "app", "version": "1.0", "build": "habc_2", "build_number": 2, "depends": ["lib"],
         "constrains": ["other <2"]},
        {"name": "lib", "version": "1.0", "subdir": "noarch", "noarch": "python"},
    ])
    proc = solve("app", "-c", chan, "--json")
    records = json.loads(proc.stdout)
    assert [r["name"] for r in records] == ["app", "lib"]
    fields = {"name", "version", "build", "build_number", "subdir", "url", "sha256", "md5", "size", "depends",
              "constrains", "channel"}
    for r in records:
        assert set(r) == fields
        assert len(r["sha256"]) == 64 and len(r["md5"]) == 32 and r["size"] > 0
        assert r["url"].endswith(f"/{r['subdir']}/{r['name']}-{r['version']}-{r['build']}.conda"), r["url"]
    app = records[0]
    assert (app["build"], app["build_number"], app["subdir"]) == ("habc_2", 2, "linux-64")
    assert app["depends"] == ["lib"] and app["constrains"] == ["other <2"]
    assert records[1]["subdir"] == "noarch"
    # The channel is its canonical URL; artifacts sit under it.
    assert app["url"].startswith(app["channel"] + "/linux-64/")
    if chan.startswith("http"):
        assert app["channel"] == chan
    else:
        assert app["channel"] == "file://" + chan


def test_track_features_lose_to_plain_builds(solve, channels):
    chan = channels("c", [
        {"name": "blas", "version": "1.0", "build": "mkl_5", "build_number": 5, "track_features": "blas_mkl"},
        {"name": "blas", "version": "1.0", "build": "openblas_0", "build_number": 0},
        {"name": "baz", "version": "1.1", "build": "debug_0", "track_features": "debug"},
        {"name": "baz", "version": "1.0", "build": "0"},
    ])
    got = solve.answer("blas", "baz", "-c", chan)
    assert got["blas"]["build"] == "openblas_0"  # despite the higher build number
    assert got["baz"]["version"] == "1.0"  # fewer track_features beats a higher version
    # Asked for explicitly, a featured build is still allowed.
    assert solve.answer("blas=*=mkl*", "-c", chan)["blas"]["build"] == "mkl_5"


def test_constrains_limit_but_do_not_install(solve, channels):
    chan = channels("c", [
        {"name": "app", "version": "1.0", "depends": ["lib"]},
        {"name": "lib", "version": "1.0"},
        {"name": "lib", "version": "2.0"},
        {"name": "pin", "version": "1.0", "constrains": ["lib <2"]},
    ])
    assert solve.answer("app", "-c", chan)["lib"]["version"] == "2.0"
    got = solve.answer("app", "pin", "-c", chan)
    assert got["lib"]["version"] == "1.0"
    assert set(solve.answer("pin", "-c", chan)) == {"pin"}  # a constraint alone installs nothing
    message = solve.fails("lib >=2", "pin", "-c", chan)
    assert "lib" in message and "pin" in message


def test_channel_priority(solve, channels):
    high = channels("high", [{"name": "bar", "version": "1.0"}, {"name": "only-high", "version": "1"}])
    low = channels("low", [{"name": "bar", "version": "2.0"}, {"name": "only-low", "version": "1"}])
    both = ["-c", high, "-c", low]

    strict = solve.answer("bar", "only-low", *both)
    assert strict["bar"]["version"] == "1.0" and strict["bar"]["channel"].endswith("high")
    assert strict["only-low"]["channel"].endswith("low")  # names the high channel lacks still come from low
    message = solve.fails("bar >=2", *both)  # strict: low's bar is out of reach
    assert "bar" in message

    assert solve.answer("bar", *both, "--channel-priority", "flexible")["bar"]["version"] == "1.0"
    flexible = solve.answer("bar >=2", *both, "--channel-priority", "flexible")["bar"]
    assert flexible["version"] == "2.0" and flexible["channel"].endswith("low")
    assert solve.answer("bar", *both, "--channel-priority", "disabled")["bar"]["version"] == "2.0"


TORCH = [
    {"name": "torch", "version": "2.4.0", "build": "cuda124_py312_1", "build_number": 1,
     "depends": ["__cuda >=12", "cuda-version >=12.4,<13"]},
    {"name": "torch", "version": "2.4.0", "build": "cpu_py312_0", "build_number": 0, "depends": []},
    {"name": "cuda-version", "version": "12.4", "subdir": "noarch", "noarch": "generic",
     "constrains": ["__cuda >=12"]},
]


def test_cuda_builds_need_a_cuda_virtual_package(solve, channels):
    chan = channels("c", TORCH)
    plain = solve.answer("torch", "-c", chan)
    assert plain["torch"]["build"] == "cpu_py312_0" and "cuda-version" not in plain

    flagged = solve.answer("torch", "-c", chan, "--virtual-package", "__cuda=12.4")
    assert flagged["torch"]["build"] == "cuda124_py312_1"
    assert flagged["cuda-version"]["version"] == "12.4"
    assert "__cuda" not in flagged  # virtual packages are not installed

    env = solve.answer("torch", "-c", chan, env={"CONDA_OVERRIDE_CUDA": "12.4"})
    assert env["torch"]["build"] == "cuda124_py312_1"
    # CONDA_OVERRIDE_CUDA wins over the flag, and empty means "no GPU".
    assert solve.answer("torch", "-c", chan, "--virtual-package", "__cuda=12.4",
                        env={"CONDA_OVERRIDE_CUDA": ""})["torch"]["build"] == "cpu_py312_0"
    # A driver too old for the CUDA build.
    assert solve.answer("torch", "-c", chan, "--virtual-package", "__cuda=11.8")["torch"]["build"] == "cpu_py312_0"

    message = solve.fails("torch=*=cuda*", "-c", chan)
    assert "__cuda" in message and "torch" in message


def test_unknown_package(solve, channels):
    chan = channels("c", [{"name": "foo", "version": "1.0"}])
    message = solve.fails("nosuchpkg", "-c", chan)
    assert "nosuchpkg" in message
    message = solve.fails("foo", "missing-dep-parent", "-c", chan)
    assert "missing-dep-parent" in message


def test_unsatisfiable_names_the_conflict(solve, channels):
    chan = channels("c", [
        {"name": "app", "version": "1.0", "depends": ["lib >=3"]},
        {"name": "lib", "version": "1.0"},
        {"name": "lib", "version": "2.0"},
    ])
    message = solve.fails("app", "-c", chan)
    assert "app" in message and "lib" in message
    chan2 = channels("d", [
        {"name": "old-user", "version": "1.0", "depends": ["lib <2"]},
        {"name": "lib", "version": "1.0"},
        {"name": "lib", "version": "2.0"},
    ])
    message = solve.fails("old-user", "lib >=2", "-c", chan2)
    assert "lib" in message


def test_bad_spec_and_flags_are_usage_errors(solve, channels):
    chan = channels("c", [{"name": "foo", "version": "1.0"}])
    proc = solve("foo >=1.2,<", "-c", chan, check=False)
    assert proc.returncode == 2 and "foo >=1.2,<" in proc.stderr
    proc = solve("foo", "-c", chan, "--channel-priority", "highest", check=False)
    assert proc.returncode == 2 and "highest" in proc.stderr
    proc = solve("foo", "-c", chan, "--virtual-package", "cuda=12", check=False)
    assert proc.returncode == 2 and "cuda=12" in proc.stderr
    proc = run([solve.binary, "solve", "foo", "-c", chan, "--platform", "darwin/arm64"], check=False)
    assert proc.returncode == 2 and "darwin/arm64" in proc.stderr
    proc = solve("foo", "-c", chan, "--mirror", "https://conda.anaconda.org", check=False)
    assert proc.returncode == 2 and 'bad --mirror "https://conda.anaconda.org": expected PREFIX=URL' in proc.stderr


def test_second_run_revalidates_with_304(solve, tmp_path):
    root = tmp_path / "channels"
    make_channel(root / "chan", [{"name": "foo", "version": "1.0"}, {"name": "foo", "version": "1.1"}])
    with ChannelServer(root) as server:
        chan = f"{server.url}/chan"
        first = solve.answer("foo", "-c", chan)
        fetched = server.paths(200)
        assert "/chan/linux-64/repodata.json.zst" in fetched and "/chan/noarch/repodata.json.zst" in fetched
        before = len(server.requests)

        second = solve.answer("foo", "-c", chan)
        assert second == first
        again = server.requests[before:]
        repodata = [(p, status, h) for (_, p, status, h) in again if "repodata" in p]
        assert repodata, again
        assert all(status == 304 for (_, status, _) in repodata), [(p, s) for (p, s, _) in repodata]
        assert all("if-none-match" in h or "if-modified-since" in h for (_, _, h) in repodata)

        # A changed channel is fetched again.
        make_channel(root / "chan", [{"name": "foo", "version": "1.0"}, {"name": "foo", "version": "1.2"}])
        assert solve.answer("foo", "-c", chan)["foo"]["version"] == "1.2"

    # Offline: the cache answers, no server needed.
    assert solve.answer("foo", "-c", chan, "--offline")["foo"]["version"] == "1.2"


def test_zst_missing_falls_back_to_json(solve, tmp_path):
    root = tmp_path / "channels"
    make_channel(root / "chan", [{"name": "foo", "version": "3.0"}], zst=False)
    with ChannelServer(root) as server:
        assert solve.answer("foo", "-c", f"{server.url}/chan")["foo"]["version"] == "3.0"
        assert "/chan/linux-64/repodata.json" in server.paths(200)


def test_channel_alias_and_mirror(solve, tmp_path):
    root = tmp_path / "channels"
    make_channel(root / "mychan", [{"name": "foo", "version": "1.0"}])
    make_channel(root / "mirror" / "mychan", [{"name": "foo", "version": "1.0"}])
    with ChannelServer(root) as server:
        got = solve.answer("foo", "-c", "mychan", "--channel-alias", server.url)
        assert got["foo"]["channel"] == f"{server.url}/mychan"
        assert got["foo"]["url"] == f"{server.url}/mychan/linux-64/foo-1.0-0.conda"
        assert "/mychan/linux-64/repodata.json.zst" in server.paths()

        # A mirror serves the repodata; records keep the channel's own URLs.
        before = len(server.requests)
        got = solve.answer("foo", "-c", "mychan", "--channel-alias", "https://conda.invalid",
                           "--mirror", f"https://conda.invalid={server.url}/mirror", "--store", str(tmp_path / "s2"))
        assert got["foo"]["url"] == "https://conda.invalid/mychan/linux-64/foo-1.0-0.conda"
        assert "/mirror/mychan/linux-64/repodata.json.zst" in [p for (_, p, _, _) in server.requests[before:]]


def test_missing_channel_is_an_error(solve, tmp_path):
    with ChannelServer(tmp_path) as server:
        message = solve.fails("foo", "-c", f"{server.url}/nothing-here")
        assert "nothing-here" in message
    message = solve.fails("foo", "-c", str(tmp_path / "no-folder"))
    assert "no-folder" in message


def test_real_artifacts_describe_their_files(solve, tmp_path):
    root = tmp_path / "channels"
    make_channel(root / "chan", [
        {"name": "data", "version": "1.0", "files": {"share/data/hello.txt": "hello\n"}},
        {"name": "old", "version": "2.0", "fn": "old-2.0-0.tar.bz2", "files": {"share/old.txt": b"x"}},
    ])
    got = solve.answer("data", "old", "-c", str(root / "chan"))
    for name, fn in (("data", "data-1.0-0.conda"), ("old", "old-2.0-0.tar.bz2")):
        artifact = (root / "chan" / "linux-64" / fn).read_bytes()
        record = got[name]
        assert record["url"].endswith("/linux-64/" + fn)
        assert record["sha256"] == hashlib.sha256(artifact).hexdigest()
        assert record["md5"] == hashlib.md5(artifact).hexdigest()
        assert record["size"] == len(artifact)
