"""Real conda package artifacts for tests: `.conda` (a ZIP of STORED members holding zstd tars,
as conda-package-handling writes it) and `.tar.bz2`, with info/index.json, info/paths.json and
info/link.json, byte-for-byte reproducible (fixed mtimes and owners).

    from conda_packages import write_artifact, repodata_entry, Symlink, File, PLACEHOLDER

    path = write_artifact(channel / "linux-64",
                          {"name": "foo", "version": "1.0", "build": "h0_0", "build_number": 0,
                           "depends": [], "subdir": "linux-64", "noarch": "",
                           "placeholder": {"etc/foo.cfg": "text", "lib/libfoo.so": "binary"}},
                          {"etc/foo.cfg": f"root={PLACEHOLDER}\\n",
                           "lib/libfoo.so": b"\\x7fELF..." + PLACEHOLDER.encode() + b"\\0",
                           "lib/libfoo.so.1": Symlink("libfoo.so")})
    entry = repodata_entry(path, record)   # for "packages.conda" / "packages" in repodata.json

Paths are written verbatim (a hostile "../x" stays "../x"). Files default to mode 0755 under bin/
and python-scripts/, else 0644; File(content, mode) chooses. A record's "placeholder" maps a path
to "text" or "binary" (placeholder PLACEHOLDER), or to {"mode": ..., "placeholder": ...}.
"entry_points" (["cmd = module:func"]) go into info/link.json for noarch: python ("link_json": False
leaves that file out); "extra_info" ({path: content}) adds or replaces files under info/. legacy=True
writes info/files + info/has_prefix instead of info/paths.json.

Also a command line, for tests written in other languages:
    python3 conda_packages.py OUT_DIR SPEC.json  → prints the artifact's path
where SPEC.json is {"record": {...}, "files": {path: text | {"symlink": t} | {"base64": b, "mode": m}
| {"text": t, "mode": m}}, "fmt": "conda" | "tar.bz2", "legacy": false}.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# conda-build pads the build prefix to 255 characters with "_placehold".
PLACEHOLDER = ("/home/conda/feedstock_root/build_artifacts/pkg_1700000000000/_h_env" + "_placehold" * 30)[:255]
LEGACY_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
MTIME = 1700000000  # every tar member and ZIP entry: artifacts are reproducible


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class File:
    content: bytes | str
    mode: int = 0o644


def _as_bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content


def _default_mode(path: str) -> int:
    return 0o755 if path.startswith(("bin/", "python-scripts/")) else 0o644


def _normalise(files: dict) -> dict[str, File | Symlink]:
    out: dict[str, File | Symlink] = {}
    for path, value in files.items():
        if isinstance(value, (File, Symlink)):
            out[path] = value
        else:
            out[path] = File(_as_bytes(value), _default_mode(path))
    return out


def _placeholders(record: dict) -> dict[str, tuple[str, str]]:
    """path → (placeholder, mode)"""
    out = {}
    for path, spec in (record.get("placeholder") or {}).items():
        if isinstance(spec, dict):
            out[path] = (spec.get("placeholder", PLACEHOLDER), spec.get("mode", "text"))
        else:
            out[path] = (PLACEHOLDER, spec)
    return out


def _index_json(record: dict) -> dict:
    index = {
        "name": record["name"],
        "version": record["version"],
        "build": record["build"],
        "build_number": int(record.get("build_number", 0)),
        "depends": list(record.get("depends", [])),
        "constrains": list(record.get("constrains", [])),
        "subdir": record.get("subdir", "noarch" if record.get("noarch") else "linux-64"),
        "license": record.get("license", "MIT"),
        "timestamp": int(record.get("timestamp", MTIME * 1000)),
    }
    if record.get("noarch"):
        index["noarch"] = record["noarch"]
    if record.get("track_features"):
        index["track_features"] = record["track_features"]
    if record.get("python_site_packages_path"):
        index["python_site_packages_path"] = record["python_site_packages_path"]
    return index


def _paths_json(files: dict[str, File | Symlink], placeholders: dict[str, tuple[str, str]]) -> dict:
    paths = []
    for path, value in files.items():
        if isinstance(value, Symlink):
            # The CEP says softlink hashes describe the target; ours may dangle: hash the link text.
            data = value.target.encode()
            entry = {"_path": path, "path_type": "softlink"}
        else:
            data = _as_bytes(value.content)
            entry = {"_path": path, "path_type": "hardlink"}
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["size_in_bytes"] = len(data)
        if path in placeholders:
            placeholder, mode = placeholders[path]
            entry["prefix_placeholder"] = placeholder
            entry["file_mode"] = mode
        paths.append(entry)
    return {"paths": paths, "paths_version": 1}


def _has_prefix(placeholders: dict[str, tuple[str, str]]) -> str:
    lines = []
    for path, (placeholder, mode) in placeholders.items():
        if placeholder == LEGACY_PLACEHOLDER and mode == "text":
            lines.append(path)
        else:
            lines.append(f'"{placeholder}" {mode} "{path}"')
    return "".join(line + "\n" for line in lines)


def _info_files(record: dict, files: dict[str, File | Symlink], legacy: bool) -> dict[str, File | Symlink]:
    placeholders = _placeholders(record)
    info: dict[str, File | Symlink] = {
        "info/index.json": File(json.dumps(_index_json(record), indent=2, sort_keys=True).encode()),
    }
    if legacy:
        info["info/files"] = File("".join(p + "\n" for p in files).encode())
        if placeholders:
            info["info/has_prefix"] = File(_has_prefix(placeholders).encode())
    else:
        info["info/paths.json"] = File(json.dumps(_paths_json(files, placeholders), indent=2).encode())
    if record.get("noarch") and record.get("link_json", True):
        noarch = {"type": record["noarch"]}
        if record["noarch"] == "python":
            noarch["entry_points"] = list(record.get("entry_points", []))
        info["info/link.json"] = File(json.dumps({"noarch": noarch, "package_metadata_version": 1}).encode())
    for path, content in (record.get("extra_info") or {}).items():
        info[path] = File(_as_bytes(content))
    return info


def _tar_bytes(members: dict[str, File | Symlink], compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compression, format=tarfile.PAX_FORMAT) as tar:
        for path, value in members.items():
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(value, Symlink):
                info.type = tarfile.SYMTYPE
                info.linkname = value.target
                info.mode = 0o777
                tar.addfile(info)
            else:
                data = _as_bytes(value.content)
                info.size = len(data)
                info.mode = value.mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "-3", "--no-check"], input=data, check=True,
                          capture_output=True).stdout


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def write_artifact(subdir_dir: Path, record: dict, files: dict, fmt: str = "conda", legacy: bool = False) -> Path:
    """Writes <name>-<version>-<build>.<fmt> into subdir_dir and returns its path. A record["fn"]
    names the file instead, and its suffix (.conda or .tar.bz2) picks the format."""
    subdir_dir = Path(subdir_dir)
    subdir_dir.mkdir(parents=True, exist_ok=True)
    payload = _normalise(files)
    info = _info_files(record, payload, legacy)
    stem = f"{record['name']}-{record['version']}-{record['build']}"
    fn = record.get("fn")
    if fn:
        fmt = "tar.bz2" if fn.endswith(".tar.bz2") else "conda" if fn.endswith(".conda") else fmt
        stem = fn[: -len(".tar.bz2")] if fmt == "tar.bz2" else fn[: -len(".conda")] if fmt == "conda" else stem
    if fmt == "conda":
        path = subdir_dir / f"{stem}.conda"
        # As conda-package-handling writes it: metadata.json, pkg-, info- last, zip64 members.
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr(_zip_info("metadata.json"), json.dumps({"conda_pkg_format_version": 2}))
            for name, data in ((f"pkg-{stem}.tar.zst", _zstd(_tar_bytes(payload))),
                               (f"info-{stem}.tar.zst", _zstd(_tar_bytes(info)))):
                with z.open(_zip_info(name), "w", force_zip64=True) as member:
                    member.write(data)
    elif fmt == "tar.bz2":
        path = subdir_dir / f"{stem}.tar.bz2"
        path.write_bytes(_tar_bytes({**payload, **info}, "bz2"))
    else:
        raise ValueError(f"unknown package format {fmt!r}")
    return path


def repodata_entry(path: Path, record: dict) -> dict:
    """The repodata.json record of an artifact written by write_artifact."""
    data = Path(path).read_bytes()
    entry = _index_json(record)
    entry["md5"] = hashlib.md5(data).hexdigest()
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    entry["size"] = len(data)
    entry["fn"] = Path(path).name
    return entry


def _files_from_spec(spec: dict) -> dict:
    out = {}
    for path, value in spec.items():
        if isinstance(value, str):
            out[path] = value
        elif "symlink" in value:
            out[path] = Symlink(value["symlink"])
        elif "base64" in value:
            out[path] = File(base64.b64decode(value["base64"]), value.get("mode", _default_mode(path)))
        else:
            out[path] = File(value["text"].encode(), value.get("mode", _default_mode(path)))
    return out


def main(argv: list[str]) -> int:
    out_dir, spec_file = Path(argv[1]), Path(argv[2])
    spec = json.loads(spec_file.read_text())
    path = write_artifact(out_dir, spec["record"], _files_from_spec(spec["files"]), spec.get("fmt", "conda"),
                          spec.get("legacy", False))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
