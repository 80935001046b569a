// Recipes that parse, and what they parse into.
#include <doctest/doctest.h>

#include <variant>

#include "recipe_helpers.hpp"

using ocibuild::recipe::BaseSpec;
using ocibuild::recipe::CondaStep;
using ocibuild::recipe::CopyStep;
using ocibuild::recipe::Recipe;
using ocibuild::recipe::RunStep;
using ocibuild::recipe::test::Context;
using ocibuild::recipe::test::with_base;
namespace fs = std::filesystem;

TEST_SUITE("recipe") {

TEST_CASE("a full recipe, as in the design sketch") {
    Context c;
    c.directory("layouts/cuda");
    c.file("train/main.py", "print('hi')\n");
    const Recipe r = c.parse(R"([image]
name = "registry.internal:5000/ml/pytorch"
tags = ["2.4-cuda12.4", "latest"]
platform = "linux/arm64/v8"

[base]
ref = "oci:layouts/cuda:12.4"

[[step]]
run = "apt-get update && apt-get install -y wget"

[[step]]
[step.conda]
prefix = "/opt/conda"
channels = ["conda-forge"]
packages = ["python=3.11", "pytorch=2.4=*cuda*", "torchvision"]

[[step]]
copy = { from = "train/", to = "/workspace/train", mode = 0o644, owner = "1000:100" }

[[step]]
run = ["python", "-m", "compileall", "/workspace/train"]
env = { PYTHONPYCACHEPREFIX = "/tmp/pyc", LANG = "C.UTF-8" }
workdir = "/workspace"
user = "1000"
network = "none"

[config]
env = { PATH = "/opt/conda/bin:${PATH}" }
workdir = "/workspace"
entrypoint = ["/usr/bin/tini", "--"]
cmd = ["python"]
user = "1000:100"
labels = { "org.opencontainers.image.source" = "https://example.invalid/ml" }
ports = ["8888", 6006, "53/udp", "9000/sctp"]
volumes = ["/data"]
stop_signal = "term"
author = "ML team"
)");
    CHECK(r.file == "recipes/x.toml");
    CHECK(r.directory == c.path());

    CHECK(r.image.name == "registry.internal:5000/ml/pytorch");
    CHECK(r.image.tags == std::vector<std::string>{"2.4-cuda12.4", "latest"});
    CHECK(r.image.platform.os == "linux");
    CHECK(r.image.platform.architecture == "arm64");
    CHECK(r.image.platform.variant == "v8");

    CHECK(r.base.kind == BaseSpec::Kind::oci_layout);
    CHECK(r.base.ref == "oci:layouts/cuda:12.4");
    CHECK(r.base.path == c.path() / "layouts/cuda");
    CHECK(r.base.tag == "12.4");
    CHECK(r.base.pos.file == "recipes/x.toml");
    CHECK(r.base.pos.line == 7);
    CHECK(r.base.pos.column == 7);

    REQUIRE(r.steps.size() == 4);
    CHECK(r.steps[0].kind() == "run");
    CHECK(r.steps[1].kind() == "conda");
    CHECK(r.steps[2].kind() == "copy");
    CHECK(r.steps[3].kind() == "run");
    CHECK(r.steps[0].pos.line == 9);
    CHECK(r.steps[0].pos.column == 1);
    CHECK(r.steps[1].pos.line == 12);
    CHECK(r.steps[2].pos.line == 18);
    CHECK(r.steps[3].pos.line == 21);

    const auto& run = std::get<RunStep>(r.steps[0].action);
    CHECK(run.command == "apt-get update && apt-get install -y wget");
    CHECK(run.shell == std::vector<std::string>{"/bin/sh", "-c"});
    CHECK(run.argv ==
          std::vector<std::string>{"/bin/sh", "-c", "apt-get update && apt-get install -y wget"});
    CHECK(run.network == "host");
    CHECK(run.env.empty());
    CHECK(run.workdir.empty());
    CHECK(run.user.empty());

    const auto& conda = std::get<CondaStep>(r.steps[1].action);
    CHECK(conda.prefix == "/opt/conda");
    CHECK(conda.channels == std::vector<std::string>{"conda-forge"});
    CHECK(conda.packages == std::vector<std::string>{"python=3.11", "pytorch=2.4=*cuda*", "torchvision"});

    const auto& copy = std::get<CopyStep>(r.steps[2].action);
    CHECK(copy.from == "train/");
    CHECK(copy.source == c.path() / "train");
    CHECK(copy.to == "/workspace/train");
    REQUIRE(copy.mode.has_value());
    CHECK(*copy.mode == 0644);
    REQUIRE(copy.owner.has_value());
    CHECK(copy.owner->uid == 1000);
    CHECK(copy.owner->gid == 100);

    const auto& list = std::get<RunStep>(r.steps[3].action);
    CHECK(list.command.empty());
    CHECK(list.argv == std::vector<std::string>{"python", "-m", "compileall", "/workspace/train"});
    CHECK(list.env == std::map<std::string, std::string>{{"LANG", "C.UTF-8"}, {"PYTHONPYCACHEPREFIX", "/tmp/pyc"}});
    CHECK(list.workdir == "/workspace");
    CHECK(list.user == "1000");
    CHECK(list.network == "none");

    CHECK(r.config.env == std::map<std::string, std::string>{{"PATH", "/opt/conda/bin:${PATH}"}});
    CHECK(r.config.workdir == "/workspace");
    CHECK(r.config.entrypoint == std::vector<std::string>{"/usr/bin/tini", "--"});
    CHECK(r.config.cmd == std::vector<std::string>{"python"});
    CHECK(r.config.user == "1000:100");
    CHECK(r.config.labels ==
          std::map<std::string, std::string>{{"org.opencontainers.image.source", "https://example.invalid/ml"}});
    CHECK(r.config.ports == std::vector<std::string>{"8888/tcp", "6006/tcp", "53/udp", "9000/sctp"});
    CHECK(r.config.volumes == std::vector<std::string>{"/data"});
    CHECK(r.config.stop_signal == "SIGTERM");
    CHECK(r.config.author == "ML team");
}

TEST_CASE("defaults of a minimal recipe") {
    Context c;
    const Recipe r = c.parse("[base]\nref = \"scratch\"\n");
    CHECK(r.base.kind == BaseSpec::Kind::scratch);
    CHECK(r.base.ref == "scratch");
    CHECK(r.base.tag.empty());
    CHECK(r.image.name.empty());
    CHECK(r.image.tags.empty());
    CHECK(r.image.platform.to_string() == "linux/amd64");
    CHECK(r.steps.empty());
    CHECK(r.config.env.empty());
    CHECK_FALSE(r.config.workdir.has_value());
    CHECK_FALSE(r.config.entrypoint.has_value());
    CHECK_FALSE(r.config.cmd.has_value());
    CHECK_FALSE(r.config.user.has_value());
    CHECK_FALSE(r.config.stop_signal.has_value());
    CHECK(r.config.ports.empty());
    CHECK(r.config.author.empty());
}

TEST_CASE("an empty entrypoint is kept: it clears the base's") {
    Context c;
    const Recipe r = c.parse(with_base("[config]\nentrypoint = []\n"));
    REQUIRE(r.config.entrypoint.has_value());
    CHECK(r.config.entrypoint->empty());
}

TEST_CASE("registry bases are normalised") {
    Context c;
    auto base = [&](std::string_view ref) {
        return c.parse("[base]\nref = \"" + std::string(ref) + "\"\n").base;
    };
    auto b = base("nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04");
    CHECK(b.kind == BaseSpec::Kind::registry);
    CHECK(b.ref == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04");
    CHECK(b.tag == "docker.io/nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04");
    CHECK(base("ubuntu").tag == "docker.io/library/ubuntu:latest");
    CHECK(base("127.0.0.1:5000/ml/base:1").tag == "127.0.0.1:5000/ml/base:1");
}

TEST_CASE("image names are normalised repositories") {
    Context c;
    CHECK(c.parse(with_base("[image]\nname = \"myapp\"\n")).image.name == "docker.io/library/myapp");
}

TEST_CASE("oci bases: the tag follows the last colon unless a slash comes after it") {
    Context c;
    c.directory("layout");
    c.directory("a:b/c");
    c.file("base.tar");
    auto base = [&](std::string_view ref) {
        return c.parse("[base]\nref = \"" + std::string(ref) + "\"\n").base;
    };
    auto plain = base("oci:layout");
    CHECK(plain.kind == BaseSpec::Kind::oci_layout);
    CHECK(plain.path == c.path() / "layout");
    CHECK(plain.tag.empty());

    auto slashed = base("oci:./a:b/c");
    CHECK(slashed.path == c.path() / "a:b/c");
    CHECK(slashed.tag.empty());

    auto trailing = base("oci:layout/");
    CHECK(trailing.path == c.path() / "layout");

    auto archive = base("oci-archive:base.tar:v1");
    CHECK(archive.kind == BaseSpec::Kind::oci_archive);
    CHECK(archive.path == c.path() / "base.tar");
    CHECK(archive.tag == "v1");

    auto absolute = base("oci-archive:" + c.abs("base.tar"));
    CHECK(absolute.path == c.path() / "base.tar");
    CHECK(absolute.tag.empty());
}

TEST_CASE("run: string form with a custom shell") {
    Context c;
    const Recipe r = c.parse(with_base("[[step]]\nrun = \"make -j8\"\nshell = [\"/bin/bash\", \"-euo\", \"pipefail\", "
                                       "\"-c\"]\nenv = { CC = \"gcc\" }\n"));
    REQUIRE(r.steps.size() == 1);
    const auto& run = std::get<RunStep>(r.steps[0].action);
    CHECK(run.command == "make -j8");
    CHECK(run.shell == std::vector<std::string>{"/bin/bash", "-euo", "pipefail", "-c"});
    CHECK(run.argv == std::vector<std::string>{"/bin/bash", "-euo", "pipefail", "-c", "make -j8"});
    CHECK(run.env.at("CC") == "gcc");
}

TEST_CASE("steps as an inline array of tables") {
    Context c;
    const Recipe r = c.parse("step = [{ run = \"true\" }, { conda = { prefix = \"/opt/conda\", packages = "
                             "[\"python\"] } }]\n[base]\nref = \"scratch\"\n");
    REQUIRE(r.steps.size() == 2);
    CHECK(r.steps[0].kind() == "run");
    CHECK(r.steps[1].kind() == "conda");
    const auto& conda = std::get<CondaStep>(r.steps[1].action);
    CHECK(conda.channels.empty());
    CHECK(conda.packages == std::vector<std::string>{"python"});
}

TEST_CASE("copy: mode and owner spellings") {
    Context c;
    c.file("a");
    auto copy = [&](std::string_view extra) {
        auto r = c.parse(with_base("[[step]]\ncopy = { from = \"a\", to = \"/a\", " + std::string(extra) + " }\n"));
        return std::get<CopyStep>(r.steps.at(0).action);
    };
    CHECK(copy("mode = \"755\"").mode == 0755u);
    CHECK(copy("mode = \"0644\"").mode == 0644u);
    CHECK(copy("mode = 0o4755").mode == 04755u);
    CHECK(copy("mode = 0").mode == 0u);
    auto o = copy("owner = \"1000\"").owner;
    REQUIRE(o.has_value());
    CHECK(o->uid == 1000);
    CHECK(o->gid == 1000);
    o = copy("owner = 0").owner;
    REQUIRE(o.has_value());
    CHECK(o->uid == 0);
    CHECK(o->gid == 0);
    auto whole = copy("owner = \"0:0\"");
    CHECK_FALSE(whole.mode.has_value());
}

TEST_CASE("copy: the whole context, and a path through a subdirectory") {
    Context c;
    c.file("src/app.py");
    auto r = c.parse(with_base("[[step]]\ncopy = { from = \".\", to = \"/app\" }\n"
                               "[[step]]\ncopy = { from = \"src/../src/app.py\", to = \"/app/app.py\" }\n"));
    CHECK(std::get<CopyStep>(r.steps.at(0).action).source == c.path());
    CHECK(std::get<CopyStep>(r.steps.at(1).action).source == c.path() / "src/app.py");
}

TEST_CASE("stop signals") {
    Context c;
    auto signal = [&](std::string_view value) {
        return c.parse(with_base("[config]\nstop_signal = " + std::string(value) + "\n")).config.stop_signal;
    };
    CHECK(signal("\"SIGTERM\"") == "SIGTERM");
    CHECK(signal("\"sigint\"") == "SIGINT");
    CHECK(signal("\"15\"") == "15");
    CHECK(signal("9") == "9");
    CHECK(signal("\"SIGRTMIN+3\"") == "SIGRTMIN+3");
}

TEST_CASE("parse_recipe reads a file; its directory is the context") {
    Context c;
    c.file("recipes/train/main.py");
    c.file("recipes/app.toml", "[base]\nref = \"scratch\"\n[[step]]\ncopy = { from = \"train\", to = \"/train\" }\n");
    const Recipe r = ocibuild::recipe::parse_recipe(c.path() / "recipes/app.toml");
    CHECK(r.file == c.path() / "recipes/app.toml");
    CHECK(r.directory == c.path() / "recipes");
    CHECK(std::get<CopyStep>(r.steps.at(0).action).source == c.path() / "recipes/train");
}

TEST_CASE("parse_recipe names the file in its errors") {
    Context c;
    c.file("r.toml", "step = 1\n[base]\nref = \"scratch\"\n");
    const auto file = c.path() / "r.toml";
    try {
        (void)ocibuild::recipe::parse_recipe(file);
        FAIL("no error");
    } catch (const ocibuild::recipe::RecipeError& e) {
        CHECK(std::string(e.what()) == file.string() +
                                           ":1:8: \"step\" in the top level must be an array of tables ([[step]]), "
                                           "not an integer\n"
                                           "  step = 1\n"
                                           "         ^");
    }
}

TEST_CASE("parse_recipe: an unreadable file is not_found") {
    Context c;
    const auto missing = c.path() / "nope.toml";
    try {
        (void)ocibuild::recipe::parse_recipe(missing);
        FAIL("no error");
    } catch (const ocibuild::recipe::RecipeError&) {
        FAIL("a RecipeError");
    } catch (const ocibuild::core::Error& e) {
        CHECK(e.category() == ocibuild::core::ErrorCategory::not_found);
        CHECK(std::string(e.what()) == "cannot read recipe " + missing.string() + ": No such file or directory");
    }
    try {
        (void)ocibuild::recipe::parse_recipe(c.path());
        FAIL("no error");
    } catch (const ocibuild::core::Error& e) {
        CHECK(e.category() == ocibuild::core::ErrorCategory::not_found);
        CHECK(std::string(e.what()) == "cannot read recipe " + c.path().string() + ": Is a directory");
    }
}

}  // TEST_SUITE
