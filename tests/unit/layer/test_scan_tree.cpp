#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace layer_test;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& p, std::string_view content, mode_t mode = 0644) {
    std::ofstream(p, std::ios::binary) << content;
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

const TarEntry& find(const std::vector<TarEntry>& entries, std::string_view path) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const TarEntry& e) { return e.path == path; });
    REQUIRE_MESSAGE(it != entries.end(), "missing " << path);
    return *it;
}

bool has(const std::vector<TarEntry>& entries, std::string_view path) {
    return std::any_of(entries.begin(), entries.end(), [&](const TarEntry& e) { return e.path == path; });
}

// A valid VFS_CAP_REVISION_2 value (effective, CAP_NET_RAW permitted): the kernel checks the format.
const std::string capability("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);

}  // namespace

TEST_CASE("scan_tree lists a tree with every kind of entry") {
    core::TempDir tmp;
    const fs::path root = tmp.path() / "root";
    fs::create_directories(root / "usr/lib");
    fs::create_directories(root / "usr/bin");
    write_file(root / "usr/lib/libfoo.so.12.4.127", std::string(5000, 'E'), 0755);
    fs::create_symlink("libfoo.so.12.4.127", root / "usr/lib/libfoo.so.12");
    fs::create_symlink("libfoo.so.12", root / "usr/lib/libfoo.so");
    write_file(root / "usr/bin/z-tool", "tool", 04755);
    fs::create_hard_link(root / "usr/bin/z-tool", root / "usr/bin/a-tool");  // sorts first: holds the data
    REQUIRE(::chmod((root / "usr/bin").c_str(), 01777) == 0);
    REQUIRE(::mkfifo((root / "fifo").c_str(), 0600) == 0);
    // A socket: has no place in a layer, so it is skipped.
    const int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(sock >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string sock_path = (root / "sock").string();
    REQUIRE(sock_path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
    REQUIRE(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(sock);
    const bool with_cap = ::lsetxattr((root / "usr/bin/z-tool").c_str(), "security.capability", capability.data(),
                                      capability.size(), 0) == 0;
    if (!with_cap) MESSAGE("cannot set security.capability here; that part is not checked");

    const auto entries = layer::scan_tree(root, "");
    CHECK(!has(entries, ""));
    CHECK(!has(entries, "sock"));
    CHECK(std::is_sorted(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.path < b.path; }));

    const TarEntry& lib = find(entries, "usr/lib/libfoo.so.12.4.127");
    CHECK(lib.type == EntryType::regular);
    CHECK(lib.size == 5000);
    CHECK(lib.mode == 0755);
    CHECK(lib.source == root / "usr/lib/libfoo.so.12.4.127");
    CHECK(lib.uid == ::getuid());
    CHECK(find(entries, "usr/lib/libfoo.so").type == EntryType::symlink);
    CHECK(find(entries, "usr/lib/libfoo.so").link_target == "libfoo.so.12");
    CHECK(find(entries, "usr/bin").type == EntryType::directory);
    CHECK(find(entries, "usr/bin").mode == 01777);
    CHECK(find(entries, "fifo").type == EntryType::fifo);
    CHECK(find(entries, "fifo").mode == 0600);

    const TarEntry& first = find(entries, "usr/bin/a-tool");
    const TarEntry& second = find(entries, "usr/bin/z-tool");
    CHECK(first.type == EntryType::regular);
    CHECK(first.mode == 04755);
    CHECK(second.type == EntryType::hardlink);
    CHECK(second.link_target == "usr/bin/a-tool");
    if (with_cap) CHECK(first.xattrs.at("security.capability") == capability);

    // The whole tree through write_tar and back.
    const auto back = read_back(tar_of(entries));
    auto read = [&](std::string_view path) -> const ReadBack& {
        auto it = std::find_if(back.begin(), back.end(), [&](const ReadBack& r) { return r.entry.path == path; });
        REQUIRE(it != back.end());
        return *it;
    };
    CHECK(read("usr/lib/libfoo.so.12.4.127").content == std::string(5000, 'E'));
    CHECK(read("usr/bin/a-tool").content == "tool");
    CHECK(read("usr/bin/z-tool").entry.type == EntryType::hardlink);
    CHECK(read("usr/bin/z-tool").entry.link_target == "usr/bin/a-tool");
    if (with_cap) CHECK(read("usr/bin/a-tool").entry.xattrs.at("security.capability") == capability);
}

TEST_CASE("scan_tree with a prefix includes the root as the prefix entry") {
    core::TempDir tmp;
    const fs::path root = tmp.path() / "ctx";
    fs::create_directories(root / "sub");
    write_file(root / "sub/train.py", "print(1)\n");
    REQUIRE(::chmod(root.c_str(), 0750) == 0);

    const auto entries = layer::scan_tree(root, "workspace/train");
    REQUIRE(entries.size() == 3);
    CHECK(entries[0].path == "workspace/train");
    CHECK(entries[0].type == EntryType::directory);
    CHECK(entries[0].mode == 0750);
    CHECK(entries[1].path == "workspace/train/sub");
    CHECK(entries[2].path == "workspace/train/sub/train.py");
    CHECK(entries[2].size == 9);

    // Leading and trailing slashes of the prefix are dropped; ".." is refused.
    CHECK(layer::scan_tree(root, "/workspace/train/")[0].path == "workspace/train");
    CHECK_THROWS_AS((void)layer::scan_tree(root, "../x"), core::Error);
    CHECK_THROWS_AS((void)layer::scan_tree(root / "sub/train.py", ""), core::Error);
    CHECK_THROWS_AS((void)layer::scan_tree(root / "missing", ""), core::Error);
}
