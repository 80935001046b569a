"""`run` steps in the rootless sandbox, checked with umoci as the oracle: as root and as an
unprivileged user the test creates."""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ocibuild_path, read_blob, read_layout_manifest, run, write_recipe

USER = "ocibuild-run"  # has subordinate ids in /etc/subuid and /etc/subgid
NOSUB_USER = "ocibuild-nosub"  # has none: owners travel in user.rootlesscontainers


def ensure_user(name=USER):
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        # useradd grants subordinate ids by default (login.defs SUB_UID_COUNT): not to NOSUB_USER.
        no_subids = ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"] if name == NOSUB_USER else []
        run(["useradd", "-m", "-s", "/bin/sh", *no_subids, name])
        pw = pwd.getpwnam(name)
    if name == NOSUB_USER:
        for path, flag in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
            for line in Path(path).read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[0] == name:
                    start, count = int(fields[1]), int(fields[2])
                    run(["usermod", flag, f"{start}-{start + count - 1}", name])
    return pw


def subid_start(name: str, path: str) -> int:
    """The first subordinate id of `name` (the sandbox maps it to 1); -1 when it has none."""
    for line in Path(path).read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 3 and fields[0] == name:
            return int(fields[1])
    return -1


class Runner:
    """Runs ocibuild as root, or as an unprivileged user through runuser, with its own store."""

    def __init__(self, who: str, busybox_layout: Path):
        self.who = who
        self.user = {"user": USER, "nosubid": NOSUB_USER}.get(who)
        # pytest's own folders are private to root: the runner gets a folder anyone can traverse.
        self.root = Path(tempfile.mkdtemp(prefix="ocibuild-run-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.home = self.root / "home"
        self.home.mkdir(mode=0o755)
        self.store = self.home / "store"
        self.ctx = self.root / "ctx"
        self.ctx.mkdir(mode=0o755)
        self.base = self.root / "base-oci"
        shutil.copytree(busybox_layout, self.base)
        for dirpath, dirnames, filenames in os.walk(self.base):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        self.binary = ocibuild_path()
        if self.user:
            ensure_user(self.user)
            if who == "user":
                assert subid_start(USER, "/etc/subuid") >= 0 and subid_start(USER, "/etc/subgid") >= 0
            else:
                assert subid_start(NOSUB_USER, "/etc/subuid") < 0
            self.give(self.home)
            # The build tree may sit in a folder only root can enter (CI clones into one).
            copy = self.root / "ocibuild"
            shutil.copy(self.binary, copy)
            os.chmod(copy, 0o755)
            self.binary = str(copy)

    def cleanup(self):
        subprocess.run(["rm", "-rf", str(self.root)], check=False)

    def command(self, args):
        env = ["env", f"HOME={self.home}", f"OCIBUILD_STORE={self.store}", "SOURCE_DATE_EPOCH=0"]
        cmd = env + [self.binary, *map(str, args)]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return cmd

    def __call__(self, *args, check=True, timeout=600):
        proc = subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ocibuild {args} exited {proc.returncode}\n{proc.stderr}")
        return proc

    def give(self, path: Path):
        """Makes a folder the test wrote readable and writable by the runner."""
        if self.user:
            u = pwd.getpwnam(self.user)
            for dirpath, dirnames, filenames in os.walk(path):
                os.chown(dirpath, u.pw_uid, u.pw_gid)
                for name in filenames:
                    os.chown(os.path.join(dirpath, name), u.pw_uid, u.pw_gid)


@pytest.fixture(params=["root", "user", "nosubid"])
def runner(request, busybox_layout):
    r = Runner(request.param, busybox_layout)
    yield r
    r.cleanup()


def unpack(layout: Path, tag: str, dest: Path):
    run(["umoci", "unpack", "--image", f"{layout}:{tag}", dest])
    return dest / "rootfs"


def base_recipe(runner, steps: str) -> str:
    return f'[base]\nref = "oci:{runner.base}:1"\n\n{steps}'


def test_run_steps_create_modify_delete(runner, tmp_path, busybox_layout):
    recipe = write_recipe(runner.ctx, base_recipe(runner, """
[[step]]
run = "mkdir -p /app/data && echo one > /app/data/a && echo keep > /app/keep && id -u > /app/uid"

[[step]]
run = "echo two >> /app/data/a && rm /app/keep && rm /var/log/old.log && echo changed > /etc/base-release"

[[step]]
run = ["/bin/sh", "-c", "rm -rf /app/data && mkdir /app/data && echo fresh > /app/data/b"]
"""))
    runner.give(runner.ctx)
    out = runner.home / "out"
    runner(recipe, "-o", f"oci:{out}:1")
    rootfs = unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "app/uid").read_text() == "0\n"
    assert (rootfs / "etc/base-release").read_text() == "changed\n"
    assert not (rootfs / "app/keep").exists()
    assert not (rootfs / "var/log/old.log").exists()
    assert sorted(os.listdir(rootfs / "app/data")) == ["b"]
    assert (rootfs / "app/data/b").read_text() == "fresh\n"
    assert (rootfs / "bin/busybox").exists()
    # Nothing the sandbox mounted reaches a layer.
    _, manifest = read_layout_manifest(out, "1")
    config = json.loads(read_blob(out, manifest["config"]["digest"]))
    assert [h["created_by"] for h in config["history"] if "ocibuild run" in h.get("created_by", "")][0].startswith(
        "ocibuild run mkdir -p /app/data")
    import tarfile
    import gzip
    import io
    for layer in manifest["layers"][-3:]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(read_blob(out, layer["digest"])))) as tar:
            names = tar.getnames()
        for forbidden in ("proc", "dev", "sys", "etc/resolv.conf", "etc/hosts"):
            assert not any(n == forbidden or n.startswith(forbidden + "/") for n in names), (forbidden, names)


def test_chown_reaches_the_layer(runner, tmp_path, busybox_layout):
    if runner.who == "nosubid":
        pytest.skip("chown to another id needs subordinate ids (see the nosubid tests below)")
    recipe = write_recipe(runner.ctx, base_recipe(runner, """
[[step]]
run = "mkdir /owned && echo x > /owned/f && chown -R 1000:1000 /owned"
"""))
    runner.give(runner.ctx)
    out = runner.home / "out"
    runner(recipe, "-o", f"oci:{out}:1")
    rootfs = unpack(out, "1", tmp_path / "bundle")
    st = os.lstat(rootfs / "owned/f")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_failing_step_reports_and_keeps_the_store(runner, tmp_path, busybox_layout):
    recipe = write_recipe(runner.ctx, base_recipe(runner, """
[[step]]
run = "echo hello > /x"

[[step]]
run = "echo about to fail && exit 3"
"""))
    runner.give(runner.ctx)
    runner(recipe, check=False)  # the first attempt brings the base and step 1's layer into the store
    blobs_before = sorted(os.listdir(runner.store / "blobs/sha256"))
    proc = runner(recipe, check=False)
    assert proc.returncode == 1
    assert f'{recipe}:8:1' in proc.stderr
    assert 'run "echo about to fail && exit 3" failed with exit code 3' in proc.stderr
    assert sorted(os.listdir(runner.store / "blobs/sha256")) == blobs_before


def serve_once(port_holder, stop):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    port_holder.append(srv.getsockname()[1])
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        conn.close()
    srv.close()


def test_network_none_blocks_loopback(runner, tmp_path, busybox_layout):
    port, stop = [], threading.Event()
    t = threading.Thread(target=serve_once, args=(port, stop), daemon=True)
    t.start()
    while not port:
        time.sleep(0.01)
    try:
        recipe = write_recipe(runner.ctx, base_recipe(runner, f"""
[[step]]
run = "wget -q -O /host-net http://127.0.0.1:{port[0]}/ || echo failed > /host-net"

[[step]]
run = "wget -q -T 2 -O /no-net http://127.0.0.1:{port[0]}/ || echo failed > /no-net"
network = "none"
"""))
        runner.give(runner.ctx)
        out = runner.home / "out"
        runner(recipe, "-o", f"oci:{out}:1")
    finally:
        stop.set()
    rootfs = unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "host-net").read_text() == "hello"
    assert (rootfs / "no-net").read_text() == "failed\n"


def test_cache_mount_survives_and_stays_out_of_the_image(runner, tmp_path, busybox_layout):
    steps = """
[[step]]
run = "echo run >> /var/cache/thing/log && cp /var/cache/thing/log /seen"
cache = ["/var/cache/thing"]
"""
    recipe = write_recipe(runner.ctx, base_recipe(runner, steps))
    runner.give(runner.ctx)
    out = runner.home / "out"
    runner(recipe, "-o", f"oci:{out}:1")
    runner(recipe, "-o", f"oci:{out}:2")
    first = unpack(out, "1", tmp_path / "b1")
    second = unpack(out, "2", tmp_path / "b2")
    assert (first / "seen").read_text() == "run\n"
    assert (second / "seen").read_text() == "run\nrun\n"
    assert not (second / "var/cache/thing/log").exists()


def sleepers():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"sleep" in cmd[0] and b"4242" in cmd:
                found.append(pid)
    return found


def test_sigkill_leaves_no_process_or_mount(runner, tmp_path, busybox_layout):
    recipe = write_recipe(runner.ctx, base_recipe(runner, '[[step]]\nrun = "sleep 4242"\n'))
    runner.give(runner.ctx)
    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    proc = subprocess.Popen(runner.command([recipe]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while not sleepers() and time.time() < deadline:
        time.sleep(0.05)
    assert sleepers(), "the step never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while sleepers() and time.time() < deadline:
        time.sleep(0.05)
    assert sleepers() == []
    assert Path("/proc/self/mountinfo").read_text().count("\n") == mounts_before
    recipe2 = write_recipe(runner.ctx, base_recipe(runner, '[[step]]\nrun = "true"\n'), "next.toml")
    runner.give(runner.ctx)
    runner(recipe2)


def test_owner_of_a_lower_file_survives_a_later_change(runner, tmp_path):
    """A file chowned in one step and modified in the next keeps its owner (rootless: the owner
    travels in user.rootlesscontainers through the extraction cache and the copy-up)."""
    if runner.who == "nosubid":
        pytest.skip("chown to another id needs subordinate ids (see the nosubid tests below)")
    recipe = write_recipe(runner.ctx, base_recipe(runner, """
[[step]]
run = "mkdir /owned && echo one > /owned/f && chown -R 1000:1000 /owned"

[[step]]
run = "echo two >> /owned/f && touch /owned/new"
"""))
    runner.give(runner.ctx)
    out = runner.home / "out"
    runner(recipe, "-o", f"oci:{out}:1")
    rootfs = unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "owned/f").read_text() == "one\ntwo\n"
    st = os.lstat(rootfs / "owned/f")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    st = os.lstat(rootfs / "owned/new")
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_identical_layers_in_a_row(runner, tmp_path):
    """Steps that change nothing give identical layers, which must stack (one extracted folder)."""
    recipe = write_recipe(runner.ctx, base_recipe(runner, "".join(
        '[[step]]\nrun = "true"\n\n' for _ in range(5)) + '[[step]]\nrun = "echo done > /done"\n'))
    runner.give(runner.ctx)
    out = runner.home / "out"
    runner(recipe, "-o", f"oci:{out}:1")
    _, manifest = read_layout_manifest(out, "1")
    assert len({l["digest"] for l in manifest["layers"][-6:-1]}) == 1
    rootfs = unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "done").read_text() == "done\n"


# --- ownership with and without subordinate ids ------------------------------------------------


@pytest.fixture
def subid_runner(busybox_layout):
    r = Runner("user", busybox_layout)
    yield r
    r.cleanup()


def host_uid(inside: int) -> int:
    """The host uid of a container uid for USER: 0 is USER itself, 1.. its subordinate range."""
    return subid_start(USER, "/etc/subuid") + inside - 1


def host_gid(inside: int) -> int:
    return subid_start(USER, "/etc/subgid") + inside - 1


def layer_members(layout: Path, digest: str):
    import gzip
    import io
    import tarfile
    data = read_blob(layout, digest)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    tar = tarfile.open(fileobj=io.BytesIO(data))
    return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


def build_owned_base(r: Runner, where: Path):
    """An image (layout `where`, tag 1) whose top layer has /owned/f owned by 1000:1001, built by `r`."""
    recipe = write_recipe(r.ctx, base_recipe(r, """
[[step]]
run = "mkdir /owned && echo x > /owned/f && chown -R 1000:1001 /owned"
"""), "base.toml")
    r.give(r.ctx)
    r(recipe, "-o", f"oci:{where}:1")


def test_subids_base_layer_owners_are_real_inside_the_step_and_on_the_host(subid_runner, tmp_path):
    r = subid_runner
    base = r.home / "base2"
    build_owned_base(r, base)
    recipe = write_recipe(r.ctx, f'''[base]
ref = "oci:{base}:1"

[[step]]
run = "stat -c %u:%g /owned/f > /seen && stat -c %u:%g / >> /seen"
''')
    r.give(r.ctx)
    out = r.home / "out"
    r(recipe, "-o", f"oci:{out}:1")
    rootfs = unpack(out, "1", tmp_path / "bundle")
    assert (rootfs / "seen").read_text() == "1000:1001\n0:0\n"

    # The extracted layer on the host belongs to the subordinate ids (the sandbox's 1000), with no
    # owner xattr; nothing was extracted the xattr way.
    work = r.home / "store-work"
    owned = list(work.glob("layers-idmapped-*/*/owned/f"))
    assert len(owned) == 1, owned
    st = os.lstat(owned[0])
    assert (st.st_uid, st.st_gid) == (host_uid(1000), host_gid(1001))
    assert "user.rootlesscontainers" not in os.listxattr(owned[0], follow_symlinks=False)
    st = os.lstat(owned[0].parent.parent)  # the layer's root: container root is the user
    assert st.st_uid == pwd.getpwnam(USER).pw_uid
    assert not (work / "layers").exists() or not any((work / "layers").iterdir())
    # Every step's scratch folder is gone, subordinate-owned files included.
    assert list((work / "tmp").glob("step-*")) == []


def test_subids_unreadable_file_of_a_step_reaches_the_layer(subid_runner, tmp_path):
    r = subid_runner
    recipe = write_recipe(r.ctx, base_recipe(r, """
[[step]]
run = "mkdir -m 700 /private && echo secret > /private/key && chmod 600 /private/key && chown -R 1000:1000 /private"
"""))
    r.give(r.ctx)
    out = r.home / "out"
    r(recipe, "-o", f"oci:{out}:1")
    _, manifest = read_layout_manifest(out, "1")
    members = layer_members(out, manifest["layers"][-1]["digest"])
    key, content = members["private/key"]
    assert (key.uid, key.gid, key.mode) == (1000, 1000, 0o600)
    assert content == b"secret\n"
    folder, _ = members["private"]
    assert (folder.uid, folder.gid, folder.mode) == (1000, 1000, 0o700)
    # The blob in the store belongs to the user who built it.
    store_blob = r.store / "blobs" / "sha256" / manifest["layers"][-1]["digest"].split(":")[1]
    assert os.stat(store_blob).st_uid == pwd.getpwnam(USER).pw_uid
    assert list((r.home / "store-work" / "tmp").glob("step-*")) == []
    # And the next build on top of it sees the owner and reads the file as that user.
    recipe2 = write_recipe(r.ctx, f'''[base]
ref = "oci:{out}:1"

[[step]]
run = "stat -c %u:%a /private/key > /private/seen && cat /private/key >> /private/seen"
user = "1000:1000"
''', "next.toml")
    r.give(r.ctx)
    r(recipe2, "-o", f"oci:{out}:2")
    rootfs = unpack(out, "2", tmp_path / "bundle")
    assert (rootfs / "private/seen").read_text() == "1000:600\nsecret\n"


def test_without_subids_owners_travel_in_the_xattr(busybox_layout, tmp_path):
    """No subordinate ids: only root exists in the sandbox, so a base file owned by 1000 shows as
    nobody's... but keeps its owner in the layer a later step writes."""
    root_runner = Runner("root", busybox_layout)
    nosub = Runner("nosubid", busybox_layout)
    try:
        base = root_runner.root / "owned-base"
        build_owned_base(root_runner, base)
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        recipe = write_recipe(nosub.ctx, f'''[base]
ref = "oci:{base}:1"

[[step]]
run = "echo more >> /owned/f && stat -c %u /owned/f > /seen"
''')
        nosub.give(nosub.ctx)
        out = nosub.home / "out"
        nosub(recipe, "-o", f"oci:{out}:1")
        _, manifest = read_layout_manifest(out, "1")
        members = layer_members(out, manifest["layers"][-1]["digest"])
        f, content = members["owned/f"]
        assert (f.uid, f.gid) == (1000, 1001)
        assert content == b"x\nmore\n"
        # Inside the sandbox the file is the caller's, i.e. root's: its owner lives in the xattr.
        assert members["seen"][1] == b"0\n"
        work = nosub.home / "store-work"
        assert not list(work.glob("layers-idmapped-*"))
        trees = list(work.glob("layers/*/owned/f"))
        assert len(trees) == 1
        assert "user.rootlesscontainers" in os.listxattr(trees[0], follow_symlinks=False)
    finally:
        root_runner.cleanup()
        nosub.cleanup()


def test_subids_an_owner_beyond_the_ranges_is_a_clear_error(busybox_layout, subid_runner):
    """A base layer owned by an id the user's subordinate ranges do not reach cannot be extracted
    with real owners: the error names the ids and /etc/subuid."""
    root_runner = Runner("root", busybox_layout)
    try:
        base = root_runner.root / "far-base"
        recipe = write_recipe(root_runner.ctx, base_recipe(root_runner, '[[step]]\nrun = "echo x > /far && chown 70000:0 /far"\n'))
        root_runner(recipe, "-o", f"oci:{base}:1")
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        r = subid_runner
        recipe = write_recipe(r.ctx, f'[base]\nref = "oci:{base}:1"\n\n[[step]]\nrun = "true"\n')
        r.give(r.ctx)
        proc = r(recipe, check=False)
        assert proc.returncode != 0
        assert 'entry "far": cannot chown to 70000:0: the id is not mapped' in proc.stderr, proc.stderr
        assert "/etc/subuid" in proc.stderr
        work = r.home / "store-work"
        assert list(work.glob("layers-idmapped-*/.tmp-*")) == []
    finally:
        root_runner.cleanup()
