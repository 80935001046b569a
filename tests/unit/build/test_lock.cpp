// The lock file format: stable text, exact round trips, errors that name file:line:column.
#include <doctest/doctest.h>

#include <string>

#include "ocibuild/build/lock.hpp"
#include "ocibuild/core/error.hpp"

using namespace ocibuild;
using build::LockFile;
using build::LockedCondaStep;

namespace {

conda::PackageRecord record(std::string name, std::string version, std::string build, std::vector<std::string> depends = {}) {
    conda::PackageRecord r;
    r.name = std::move(name);
    r.version = std::move(version);
    r.build = std::move(build);
    r.build_number = 0;
    r.subdir = "linux-64";
    r.channel = "http://127.0.0.1:8000/chan";
    r.fn = r.name + "-" + r.version + "-" + r.build + ".conda";
    r.url = r.channel + "/linux-64/" + r.fn;
    r.sha256 = std::string(64, 'a');
    r.md5 = std::string(32, 'b');
    r.size = 1234;
    r.depends = std::move(depends);
    return r;
}

LockFile sample() {
    LockFile lock;
    lock.base = build::LockedBase{"docker.io/library/ubuntu:22.04", "linux/amd64",
                                  "sha256:" + std::string(64, 'c')};
    LockedCondaStep step;
    step.step = 2;
    step.prefix = "/opt/conda";
    step.subdir = "linux-64";
    step.channel_priority = "strict";
    step.channels = {"http://127.0.0.1:8000/chan"};
    step.specs = {"python >=3.11", "numpy"};
    step.virtual_packages = {{"__archspec", "1", "x86_64"}, {"__cuda", "12.4", "0"}, {"__unix", "0", "0"}};
    step.inputs = build::conda_inputs_hash(step.specs, step.channels, step.subdir, step.channel_priority,
                                           step.virtual_packages);
    auto python = record("python", "3.11.9", "h1_0", {"libzlib >=1.2"});
    python.build_number = 0;
    python.timestamp = 1700000000000;
    python.license = "PSF-2.0";
    auto numpy = record("numpy", "2.0.1", "py311_1", {"python >=3.11,<3.12.0a0", "libzlib"});
    numpy.build_number = 1;
    numpy.constrains = {"scipy >=1"};
    numpy.track_features = {"numpy_tf"};
    auto tzdata = record("tzdata", "2024a", "h0_0");
    tzdata.subdir = "noarch";
    tzdata.noarch = "generic";
    tzdata.md5.clear();
    // Deliberately unsorted: the file lists packages by name.
    step.packages = {python, tzdata, numpy, record("libzlib", "1.3", "h2_0")};
    lock.conda.push_back(step);
    return lock;
}

}  // namespace

TEST_CASE("lock: the text is fixed: one key per line, packages sorted, arrays one item per line") {
    LockFile lock;
    lock.base = build::LockedBase{"scratch", "linux/amd64", ""};
    LockedCondaStep step;
    step.step = 1;
    step.prefix = "/opt/conda";
    step.subdir = "linux-64";
    step.channel_priority = "strict";
    step.channels = {"file:///srv/chan"};
    step.specs = {"b", "a"};
    step.virtual_packages = {{"__unix", "0", "0"}, {"__archspec", "1", "x86_64"}};
    step.inputs = "00";
    auto b = record("b", "1.0", "h0_0", {"a >=1"});
    b.url = "file:///srv/chan/linux-64/b-1.0-h0_0.conda";
    b.channel = "file:///srv/chan";
    auto a = record("a", "2.0", "h0_0");
    a.url = "file:///srv/chan/noarch/a-2.0-h0_0.tar.bz2";
    a.fn = "a-2.0-h0_0.tar.bz2";
    a.subdir = "noarch";
    a.noarch = "python";
    a.channel = "file:///srv/chan";
    a.md5.clear();
    step.packages = {b, a};
    lock.conda.push_back(step);

    const std::string sha = std::string(64, 'a');
    CHECK(build::serialize_lock(lock) ==
          "# ocibuild lock file: written by `ocibuild lock` and `ocibuild build`; do not edit by hand.\n"
          "version = 1\n"
          "\n[base]\n"
          "ref = \"scratch\"\n"
          "platform = \"linux/amd64\"\n"
          "\n[[conda]]\n"
          "step = 1\n"
          "prefix = \"/opt/conda\"\n"
          "subdir = \"linux-64\"\n"
          "channel_priority = \"strict\"\n"
          "channels = [\n    \"file:///srv/chan\",\n]\n"
          "specs = [\n    \"b\",\n    \"a\",\n]\n"
          "inputs = \"00\"\n"
          "\n[conda.virtual_packages]\n"
          "__archspec = \"1=x86_64\"\n"
          "__unix = \"0\"\n"
          "\n[[conda.package]]\n"
          "name = \"a\"\n"
          "version = \"2.0\"\n"
          "build = \"h0_0\"\n"
          "build_number = 0\n"
          "subdir = \"noarch\"\n"
          "noarch = \"python\"\n"
          "channel = \"file:///srv/chan\"\n"
          "url = \"file:///srv/chan/noarch/a-2.0-h0_0.tar.bz2\"\n"
          "sha256 = \"" + sha + "\"\n"
          "size = 1234\n"
          "depends = []\n"
          "constrains = []\n"
          "\n[[conda.package]]\n"
          "name = \"b\"\n"
          "version = \"1.0\"\n"
          "build = \"h0_0\"\n"
          "build_number = 0\n"
          "subdir = \"linux-64\"\n"
          "channel = \"file:///srv/chan\"\n"
          "url = \"file:///srv/chan/linux-64/b-1.0-h0_0.conda\"\n"
          "sha256 = \"" + sha + "\"\n"
          "md5 = \"" + std::string(32, 'b') + "\"\n"
          "size = 1234\n"
          "depends = [\n    \"a >=1\",\n]\n"
          "constrains = []\n");
}

TEST_CASE("lock: parse(serialize(x)) == x and serializing again gives the same bytes") {
    auto lock = sample();
    auto text = build::serialize_lock(lock);
    auto parsed = build::parse_lock(text, "x.lock");
    REQUIRE(parsed.base);
    CHECK(*parsed.base == *lock.base);
    REQUIRE(parsed.conda.size() == 1);
    const auto& s = parsed.conda[0];
    CHECK(s.step == 2);
    CHECK(s.specs == lock.conda[0].specs);
    CHECK(s.channels == lock.conda[0].channels);
    CHECK(s.virtual_packages == lock.conda[0].virtual_packages);
    CHECK(s.inputs == lock.conda[0].inputs);
    REQUIRE(s.packages.size() == 4);
    CHECK(s.packages[0].name == "libzlib");
    CHECK(s.packages[1].name == "numpy");
    CHECK(s.packages[2].name == "python");
    CHECK(s.packages[3].name == "tzdata");
    for (const auto& p : lock.conda[0].packages) {
        bool found = false;
        for (const auto& q : s.packages) found = found || q == p;
        CHECK_MESSAGE(found, p.name);
    }
    CHECK(build::serialize_lock(parsed) == text);
    CHECK(parsed.find(2) == &parsed.conda[0]);
    CHECK(parsed.find(1) == nullptr);
}

TEST_CASE("lock: strings with quotes, backslashes and non-ASCII survive") {
    auto lock = sample();
    lock.conda[0].specs = {"foo[build='a\"b']", "bar \\ x", "naïve", "tab\there"};
    auto parsed = build::parse_lock(build::serialize_lock(lock), "x.lock");
    CHECK(parsed.conda[0].specs == lock.conda[0].specs);
}

TEST_CASE("lock: a fn that is not the URL's last segment is written out") {
    auto lock = sample();
    lock.conda[0].packages = {record("a", "1", "0")};
    lock.conda[0].packages[0].fn = "other.conda";
    auto text = build::serialize_lock(lock);
    CHECK(text.find("fn = \"other.conda\"") != std::string::npos);
    CHECK(build::parse_lock(text, "x.lock").conda[0].packages[0].fn == "other.conda");
}

namespace {
std::string parse_error(const std::string& text) {
    try {
        (void)build::parse_lock(text, "dir/r.lock");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        return e.what();
    }
    return "(no error)";
}
}  // namespace

TEST_CASE("lock: errors name the file, line and column") {
    CHECK(parse_error("version = 1\n[base\n").starts_with("dir/r.lock:2:"));
    CHECK(parse_error("version = 2\n") ==
          "dir/r.lock:1:11: lock file version 2 is not supported (this ocibuild reads version 1)");
    CHECK(parse_error("[base]\nref = \"scratch\"\n").starts_with("dir/r.lock:1:1: the lock file needs \"version\""));
    CHECK(parse_error("version = 1\ncolour = 3\n") == "dir/r.lock:2:1: unknown key \"colour\" in the lock file");
    CHECK(parse_error("version = 1\n[base]\nref = 3\nplatform = \"linux/amd64\"\n") ==
          "dir/r.lock:3:7: \"ref\" must be a string");
    CHECK(parse_error("version = 1\n[base]\nref = \"x\"\nplatform = \"linux/amd64\"\ndigest = \"md5:1\"\n") ==
          "dir/r.lock:5:10: \"digest\" must be sha256:<64 hex digits>, not \"md5:1\"");

    auto text = build::serialize_lock(sample());
    auto bad = text;
    auto at = bad.find("sha256 = \"aaaa");
    REQUIRE(at != std::string::npos);
    bad.replace(at, 14, "sha256 = \"zzzz");
    auto line = 1 + std::count(bad.begin(), bad.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    CHECK(parse_error(bad) == "dir/r.lock:" + std::to_string(line) + ":10: \"sha256\" must be 64 lower-case hex digits");

    auto no_url = text;
    auto url = no_url.find("url = ");
    no_url.erase(url, no_url.find('\n', url) + 1 - url);
    CHECK(parse_error(no_url).find("[[conda]] #1 [[conda.package]] #1 needs \"url\"") != std::string::npos);

    auto twice = text;
    auto conda_at = twice.find("[[conda]]");
    auto package_at = twice.find("\n[[conda.package]]");
    twice += "\n" + twice.substr(conda_at, package_at - conda_at);
    CHECK(parse_error(twice).find("step 2 is locked twice") != std::string::npos);
}

TEST_CASE("lock: the inputs hash changes with every input that decides the answer") {
    std::vector<std::string> specs{"python", "numpy"};
    std::vector<std::string> channels{"https://conda.anaconda.org/conda-forge"};
    std::vector<conda::VirtualPackage> virtuals{{"__cuda", "12.4", "0"}, {"__unix", "0", "0"}};
    auto base = build::conda_inputs_hash(specs, channels, "linux-64", "strict", virtuals);
    CHECK(base.size() == 64);
    CHECK(base == build::conda_inputs_hash(specs, channels, "linux-64", "strict", virtuals));
    std::vector<conda::VirtualPackage> reordered{virtuals[1], virtuals[0]};
    CHECK(base == build::conda_inputs_hash(specs, channels, "linux-64", "strict", reordered));

    CHECK(base != build::conda_inputs_hash({"python", "numpy>=2"}, channels, "linux-64", "strict", virtuals));
    CHECK(base != build::conda_inputs_hash({"numpy", "python"}, channels, "linux-64", "strict", virtuals));
    CHECK(base != build::conda_inputs_hash(specs, {"https://conda.anaconda.org/bioconda"}, "linux-64", "strict", virtuals));
    CHECK(base != build::conda_inputs_hash(specs, channels, "linux-aarch64", "strict", virtuals));
    CHECK(base != build::conda_inputs_hash(specs, channels, "linux-64", "flexible", virtuals));
    CHECK(base != build::conda_inputs_hash(specs, channels, "linux-64", "strict", {{"__unix", "0", "0"}}));
    CHECK(base != build::conda_inputs_hash(specs, channels, "linux-64", "strict",
                                           {{"__cuda", "12.6", "0"}, {"__unix", "0", "0"}}));
    // Items cannot run into each other.
    CHECK(build::conda_inputs_hash({"a b"}, {}, "s", "strict", {}) !=
          build::conda_inputs_hash({"a", "b"}, {}, "s", "strict", {}));
}

TEST_CASE("lock: the lock file sits beside the recipe, named after it") {
    CHECK(build::lock_path_for("recipes/pytorch.toml") == "recipes/pytorch.lock");
    CHECK(build::lock_path_for("/abs/x.toml") == "/abs/x.lock");
    CHECK(build::lock_path_for("recipe") == "recipe.lock");
}

TEST_CASE("lock: an @EXPLICIT spec lists URLs with their sha256 (md5 when that is all there is)") {
    auto a = record("a", "1", "0");
    auto b = record("b", "2", "0");
    b.sha256.clear();
    auto c = record("c", "3", "0");
    c.sha256.clear();
    c.md5.clear();
    CHECK(build::explicit_spec("linux-64", {a, b, c}) ==
          "# This file may be used to create an environment using:\n"
          "# $ conda create --name <env> --file <this file>\n"
          "# platform: linux-64\n"
          "@EXPLICIT\n" +
              a.url + "#sha256:" + a.sha256 + "\n" + b.url + "#" + b.md5 + "\n" + c.url + "\n");
}
