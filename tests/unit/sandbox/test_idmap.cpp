// Id maps: /etc/subuid parsing, the sandbox's layout, the lookups both ways, detection.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>

#include "../../../src/sandbox/idmap.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace ocibuild;
using sandbox::IdMapping;
using sandbox::IdMaps;
using sandbox::idmap::SubidRange;

TEST_CASE("subid files: ranges of the user by name or uid, in file order; junk skipped") {
    const char* text =
        "# comment\n"
        "alice:100000:65536\n"
        "bob:165536:65536\n"
        "\n"
        "1001:300000:1000\n"
        "alice:400000:10\n"
        "alice:bad:10\n"
        "alice:500000\n"
        "alice:600000:0\n"
        "alice:700000:5";  // no final newline
    CHECK(sandbox::idmap::parse_subid_ranges(text, "alice", 1001) ==
          std::vector<SubidRange>{{100000, 65536}, {300000, 1000}, {400000, 10}, {700000, 5}});
    CHECK(sandbox::idmap::parse_subid_ranges(text, "bob", 1002) == std::vector<SubidRange>{{165536, 65536}});
    CHECK(sandbox::idmap::parse_subid_ranges(text, "", 1001) == std::vector<SubidRange>{{300000, 1000}});
    CHECK(sandbox::idmap::parse_subid_ranges(text, "carol", 1003).empty());
    CHECK(sandbox::idmap::parse_subid_ranges("", "alice", 1).empty());
}

TEST_CASE("layout: 0 is the caller, the ranges follow from 1") {
    CHECK(sandbox::idmap::layout(1000, {}) == std::vector<IdMapping>{{0, 1000, 1}});
    CHECK(sandbox::idmap::layout(1000, {{100000, 65536}, {300000, 10}}) ==
          std::vector<IdMapping>{{0, 1000, 1}, {1, 100000, 65536}, {65537, 300000, 10}});
    // Cut at 2^32 - 1 ids and at the kernel's 340 lines.
    auto big = sandbox::idmap::layout(1000, {{1u << 20, 4294967000u}, {5, 5}});
    CHECK(big == std::vector<IdMapping>{{0, 1000, 1}, {1, 1u << 20, 4294967000u}, {4294967001u, 5, 5}});
    std::vector<SubidRange> many(400, SubidRange{1u << 20, 1});
    CHECK(sandbox::idmap::layout(1000, many).size() == 340);
}

TEST_CASE("IdMaps: lookups both ways, full()") {
    IdMaps ids{{{0, 1000, 1}, {1, 100000, 65536}}, {{0, 1000, 1}, {1, 200000, 65536}}};
    CHECK(ids.full());
    CHECK(ids.to_host_uid(0) == 1000u);
    CHECK(ids.to_host_uid(1) == 100000u);
    CHECK(ids.to_host_uid(1000) == 100999u);
    CHECK(ids.to_host_uid(65536) == 165535u);
    CHECK(!ids.to_host_uid(65537));
    CHECK(ids.to_host_gid(1000) == 200999u);
    CHECK(ids.to_sandbox_uid(100999) == 1000u);
    CHECK(ids.to_sandbox_uid(1000) == 0u);
    CHECK(!ids.to_sandbox_uid(99999));
    CHECK(ids.to_sandbox_gid(200000) == 1u);

    IdMaps single{{{0, 1000, 1}}, {{0, 1000, 1}}};
    CHECK(!single.full());
    CHECK(!single.to_host_uid(1));

    IdMaps identity{{{0, 0, 4294967295u}}, {{0, 0, 4294967295u}}};
    CHECK(identity.full());
    CHECK(identity.to_host_uid(4294967294u) == 4294967294u);
    CHECK(sandbox::idmap::is_identity(identity));
    CHECK(!sandbox::idmap::is_identity(single));
}

TEST_CASE("detect_id_maps and the map writer for this process") {
    core::TempDir tmp;
    auto empty = tmp.path() / "empty";
    std::ofstream(empty).flush();
    auto ids = sandbox::detect_id_maps(empty, empty);
    if (::geteuid() == 0) {
        // Root: the identity map, no user namespace, trusted.overlay xattrs.
        CHECK(sandbox::idmap::is_identity(ids));
        CHECK(sandbox::idmap::writer_for(ids) == sandbox::idmap::Writer::none);
        CHECK(!sandbox::uses_user_namespace(ids));
        IdMaps custom{{{0, 200000, 65536}}, {{0, 200000, 65536}}};
        CHECK(sandbox::idmap::writer_for(custom) == sandbox::idmap::Writer::as_root);
    } else {
        // No ranges in the file: the single mapping, written by the parent itself.
        CHECK(ids.uids == std::vector<IdMapping>{{0, static_cast<std::uint32_t>(::geteuid()), 1}});
        CHECK(sandbox::idmap::writer_for(ids) == sandbox::idmap::Writer::self_single);
        CHECK(sandbox::uses_user_namespace(ids));
    }
    // The unprivileged cases run through tests/sandbox_driver --print-maps in test_sandbox.cpp.
}

TEST_CASE("newuidmap is found only when setuid root (or with file capabilities)") {
    auto found = sandbox::idmap::find_setuid_helper("newuidmap");
    if (!found.empty()) CHECK(found.is_absolute());
    CHECK(sandbox::idmap::find_setuid_helper("ls").empty());  // exists, but not setuid
    CHECK(sandbox::idmap::find_setuid_helper("no-such-helper").empty());
}
