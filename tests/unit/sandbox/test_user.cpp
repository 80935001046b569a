// The step's user resolved against an image's passwd and group files.
#include <doctest/doctest.h>

#include "../../../src/sandbox/user.hpp"

using ocibuild::sandbox::user::Credentials;
using ocibuild::sandbox::user::resolve;

namespace {
const char* passwd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "# a comment\n"
    "broken line\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "builder:x:1234:1235:Builder,,,:/home/builder:/bin/sh\n"
    "nohome:x:1500:1500:::/bin/sh";
const char* group =
    "root:x:0:\n"
    "builder:x:1235:\n"
    "wheel:x:10:root,builder\n"
    "docker:x:999:alice,builder,bob\n"
    "other:x:20:alice\n"
    "bad:x:notanumber:builder\n";
}  // namespace

TEST_CASE("user: empty means root, with root's groups and home") {
    auto c = resolve("", passwd, group);
    REQUIRE(c);
    CHECK(*c == Credentials{0, 0, {0, 10}, "/root"});
}

TEST_CASE("user: by name, primary group from passwd, supplementary from group") {
    auto c = resolve("builder", passwd, group);
    REQUIRE(c);
    CHECK(*c == Credentials{1234, 1235, {1235, 10, 999}, "/home/builder"});
    auto n = resolve("nohome", passwd, group);
    REQUIRE(n);
    CHECK(n->home == "/");
}

TEST_CASE("user: by number, with or without a passwd entry") {
    auto c = resolve("1234", passwd, group);
    REQUIRE(c);
    CHECK(c->gid == 1235);
    CHECK(c->home == "/home/builder");
    auto bare = resolve("4321", passwd, group);
    REQUIRE(bare);
    CHECK(*bare == Credentials{4321, 0, {0}, "/"});  // docker's rule: gid 0
    CHECK(resolve("1000:1000", "", "")->gid == 1000);
}

TEST_CASE("user: an explicit group, by number or name") {
    CHECK(resolve("builder:20", passwd, group)->gid == 20);
    CHECK(resolve("builder:docker", passwd, group)->gid == 999);
    CHECK(resolve("builder:docker", passwd, group)->groups == std::vector<std::uint32_t>{999, 10});
    CHECK(resolve("0:0", passwd, group)->uid == 0);
}

TEST_CASE("user: what cannot be resolved says why") {
    CHECK(resolve("nobody", passwd, group).error() == "user \"nobody\" not found in /etc/passwd");
    CHECK(resolve("builder:nogroup", passwd, group).error() == "group \"nogroup\" not found in /etc/group");
    CHECK(resolve("builder:", passwd, group).error() == "user \"builder:\": empty group");
    CHECK(resolve("builder", "", "").error() == "user \"builder\" not found in /etc/passwd");
}
