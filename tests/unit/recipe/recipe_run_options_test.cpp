// Run-step options: cache mounts, read-only binds, timeout, shm size.
#include "recipe_helpers.hpp"

using namespace ocibuild::recipe;
using namespace ocibuild::recipe::test;

TEST_CASE("run steps take cache mounts, binds, a timeout and a shm size") {
    Context c;
    c.file("scripts/setup.sh", "echo hi\n");
    auto r = c.parse(with_base("[[step]]\nrun = \"sh /tmp/setup.sh\"\ncache = [\"/var/cache/apt\", \"/root/.cache/pip/\"]\n"
                               "bind = [{ from = \"scripts/setup.sh\", to = \"/tmp/setup.sh\" }]\n"
                               "timeout = 600\nshm_size_mb = 256\n"));
    REQUIRE(r.steps.size() == 1);
    const auto& run = std::get<RunStep>(r.steps[0].action);
    CHECK(run.caches == std::vector<std::string>{"/var/cache/apt", "/root/.cache/pip/"});
    REQUIRE(run.binds.size() == 1);
    CHECK(run.binds[0].from == "scripts/setup.sh");
    CHECK(run.binds[0].source == c.path() / "scripts/setup.sh");
    CHECK(run.binds[0].to == "/tmp/setup.sh");
    CHECK(run.timeout_seconds == 600);
    CHECK(run.shm_bytes == (256ull << 20));
}

TEST_CASE("run step option mistakes point at the value") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\ncache = [\"var/cache\"]\n")) ==
          "recipes/x.toml:5:10: item 1 of \"cache\" in [[step]] #1 must be an absolute path, not \"var/cache\"\n"
          "  cache = [\"var/cache\"]\n"
          "           ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\ntimeout = 0\n")) ==
          "recipes/x.toml:5:11: \"timeout\" in [[step]] #1 must be from 1 to 604800, not 0\n"
          "  timeout = 0\n"
          "            ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\nbind = [{ from = \"nope\", to = \"/x\" }]\n")) ==
          "recipes/x.toml:5:18: missing file: \"nope\" (looked for " + c.abs("nope") + ")\n"
          "  bind = [{ from = \"nope\", to = \"/x\" }]\n"
          "                   ^");
    c.file("a");
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"a\", to = \"/a\" }\ncache = [\"/x\"]\n")) ==
          "recipes/x.toml:5:1: \"cache\" in [[step]] #1 only applies to run steps\n"
          "  cache = [\"/x\"]\n"
          "  ^");
}
