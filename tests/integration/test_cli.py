"""The command line: verbs, help, exit codes (0 ok, 1 failure, 2 usage or recipe error)."""
from pathlib import Path

from conftest import write_recipe

HELLO = Path(__file__).resolve().parents[2] / "recipes" / "hello.toml"


def test_version(ocibuild):
    proc = ocibuild("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("ocibuild ")


def test_help_for_every_verb(ocibuild):
    top = ocibuild("--help")
    assert "build" in top.stdout
    for verb in ["build", "pull", "push", "inspect", "login", "logout"]:
        assert verb in top.stdout
        proc = ocibuild(verb, "--help")
        assert proc.returncode == 0
        assert proc.stdout.startswith(f"{verb.capitalize()}") or "Usage" in proc.stdout or "OPTIONS" in proc.stdout


def test_short_form_equals_build(ocibuild, tmp_path):
    a = ocibuild(HELLO, "-o", f"oci:{tmp_path / 'a'}").stdout.strip()
    b = ocibuild("build", HELLO, "-o", f"oci:{tmp_path / 'b'}").stdout.strip()
    assert a == b and a.startswith("sha256:")
    # The default tag is the recipe's first tag.
    assert '"org.opencontainers.image.ref.name":"latest"' in (tmp_path / "a" / "index.json").read_text()


def test_usage_errors_exit_2(ocibuild, tmp_path):
    assert ocibuild(check=False).returncode == 2
    assert ocibuild("build", check=False).returncode == 2
    assert ocibuild("build", HELLO, "--no-such-flag", check=False).returncode == 2
    proc = ocibuild(HELLO, "-o", "tarball:/x", check=False)
    assert proc.returncode == 2
    assert proc.stderr == ('error: bad --output "tarball:/x": unknown output transport "tarball" '
                           "(use oci:, oci-archive: or docker-archive:) (at character 1)\n")
    proc = ocibuild(HELLO, env={"SOURCE_DATE_EPOCH": "yesterday"}, check=False)
    assert proc.returncode == 2
    assert proc.stderr == 'error: SOURCE_DATE_EPOCH must be a number of seconds since 1970, got "yesterday"\n'


def test_missing_recipe_is_a_clear_failure(ocibuild, tmp_path):
    proc = ocibuild(tmp_path / "nope.toml", check=False)
    assert proc.returncode in (1, 2)
    assert str(tmp_path / "nope.toml") in proc.stderr
    assert proc.stderr.startswith("error: ")


def test_recipe_error_exits_2_with_position(ocibuild, tmp_path):
    recipe = write_recipe(tmp_path, '[base]\nref = "scratch"\n\n[image]\ntgas = ["x"]\n')
    proc = ocibuild(recipe, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'{recipe}:5:1: unknown key "tgas" in [image]; did you mean "tags"?\n')
    assert not (ocibuild.store / "blobs").exists()  # nothing was done


def test_unsupported_steps_fail_before_any_work(ocibuild, tmp_path):
    # Conda has no packages for linux/mips64le: refused before the copy step writes anything.
    (tmp_path / "f").write_text("x")
    recipe = write_recipe(tmp_path, '[image]\nplatform = "linux/mips64le"\n\n[base]\nref = "scratch"\n\n'
                                    '[[step]]\ncopy = { from = "f", to = "/f" }\n\n'
                                    '[[step]]\nconda = { prefix = "/opt/conda", packages = ["python"] }\n')
    proc = ocibuild(recipe, check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"error: {recipe}:10:1: step 2 (conda): no conda subdir for platform linux/mips64le "
                           "(supported: linux/amd64, linux/arm64, linux/ppc64le, linux/s390x, linux/386, linux/arm/v7)\n")
    assert not (ocibuild.store / "blobs").exists()

def test_unreachable_registry_base_names_the_recipe_line(ocibuild, tmp_path):
    # Port 9 on loopback (discard) has no registry: the failure points at the recipe's [base] line.
    recipe = write_recipe(tmp_path, '[base]\nref = "127.0.0.1:9/nvidia/cuda:12.4.1-base-ubuntu22.04"\n')
    proc = ocibuild(recipe, check=False)
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"error: {recipe}:2:7: base 127.0.0.1:9/nvidia/cuda:12.4.1-base-ubuntu22.04: ")
    assert "cannot reach registry 127.0.0.1:9" in last


def test_output_to_a_file_path_fails_cleanly(ocibuild, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    proc = ocibuild(HELLO, "-o", f"oci:{blocker}", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"error: writing oci:{blocker}: {blocker} exists and is not a directory"
    assert blocker.read_text() == "not a dir"
