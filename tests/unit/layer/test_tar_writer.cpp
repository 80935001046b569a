#include <doctest/doctest.h>

#include <locale.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace layer_test;
namespace fs = std::filesystem;

namespace {

std::vector<TarEntry> sample_entries() {
    std::vector<TarEntry> v;
    v.push_back(dir_entry("usr"));
    v.push_back(dir_entry("usr/lib"));
    v.push_back(file_entry("usr/lib/libfoo.so.12.4.127", std::string(3000, 'x') + "tail", 0755));
    v.push_back(link_entry("usr/lib/libfoo.so.12", "libfoo.so.12.4.127"));
    v.push_back(link_entry("usr/lib/libfoo.so", "libfoo.so.12"));
    v.push_back(file_entry("usr/lib-extra", "sorts between usr/lib and usr/lib/..."));
    v.push_back(file_entry("etc/passwd", "root:x:0:0::/root:/bin/sh\n"));
    v.push_back(dir_entry("etc"));
    return v;
}

std::vector<std::string> paths(const std::vector<ReadBack>& entries) {
    std::vector<std::string> out;
    for (const auto& r : entries) out.push_back(r.entry.path);
    return out;
}

const ReadBack& find(const std::vector<ReadBack>& entries, std::string_view path) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const ReadBack& r) { return r.entry.path == path; });
    REQUIRE(it != entries.end());
    return *it;
}

std::string field(const std::string& tar, std::size_t header, std::size_t offset, std::size_t len) {
    return tar.substr(header + offset, len);
}

}  // namespace

TEST_CASE("the same entries in any order give the same bytes") {
    auto entries = sample_entries();
    const std::string reference = tar_of(entries);
    std::reverse(entries.begin(), entries.end());
    CHECK(tar_of(entries) == reference);
    std::rotate(entries.begin(), entries.begin() + 3, entries.end());
    CHECK(tar_of(entries) == reference);
    std::mt19937 rng(7);
    std::shuffle(entries.begin(), entries.end(), rng);
    CHECK(tar_of(entries) == reference);

    // Whole 512-byte records, ending with exactly two zero records, like Go's archive/tar.
    CHECK(reference.size() % 512 == 0);
    CHECK(reference.substr(reference.size() - 1024) == std::string(1024, '\0'));
    CHECK(reference.substr(reference.size() - 1536, 512) != std::string(512, '\0'));
}

TEST_CASE("entries come out in bytewise path order, directories with a trailing slash") {
    const std::string tar = tar_of(sample_entries());
    CHECK(tar.substr(0, 4) == std::string("etc/\0", 4));
    CHECK(tar[156] == '5');
    const auto back = read_back(tar);
    CHECK(paths(back) == std::vector<std::string>{"etc", "etc/passwd", "usr", "usr/lib", "usr/lib-extra",
                                                  "usr/lib/libfoo.so", "usr/lib/libfoo.so.12",
                                                  "usr/lib/libfoo.so.12.4.127"});
    CHECK(find(back, "usr/lib/libfoo.so.12.4.127").content == std::string(3000, 'x') + "tail");
    CHECK(find(back, "usr/lib/libfoo.so").entry.type == EntryType::symlink);
    CHECK(find(back, "usr/lib/libfoo.so").entry.link_target == "libfoo.so.12");
}

TEST_CASE("an empty layer is the two zero records") {
    const std::string tar = tar_of({});
    CHECK(tar == std::string(1024, '\0'));
    CHECK(core::Digest::of(tar).str() == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
    CHECK(read_back(tar).empty());
}

TEST_CASE("mtimes are clamped to the epoch, negative ones to zero") {
    auto old_file = file_entry("old", "a");
    old_file.mtime = 100;
    auto new_file = file_entry("new", "b");
    new_file.mtime = 5000;
    auto negative = file_entry("negative", "c");
    negative.mtime = -7;
    auto new_dir = dir_entry("dir");
    new_dir.mtime = 99999;
    const std::string tar = tar_of({old_file, new_file, negative, new_dir}, 1000);
    const auto back = read_back(tar);
    CHECK(find(back, "old").entry.mtime == 100);
    CHECK(find(back, "new").entry.mtime == 1000);
    CHECK(find(back, "negative").entry.mtime == 0);
    CHECK(find(back, "dir").entry.mtime == 1000);
    // Whole seconds and no other times: no PAX time records at all.
    CHECK(tar.find("mtime=") == std::string::npos);
    CHECK(tar.find("atime=") == std::string::npos);
    CHECK(tar.find("ctime=") == std::string::npos);
}

TEST_CASE("long paths and long symlink targets round-trip") {
    const std::string dir150 = std::string(60, 'd') + "/" + std::string(89, 'e');  // 150 chars
    const std::string path150 = dir150 + "/file";
    const std::string path300 = std::string(120, 'p') + "/" + std::string(120, 'q') + "/" + std::string(58, 'r');
    const std::string name_over_100 = "dir/" + std::string(130, 'n');  // last component > 100: PAX path
    const std::string target = "../" + std::string(300, 't');
    REQUIRE(path300.size() == 300);
    const auto back = read_back(tar_of({file_entry(path150, "150"), file_entry(path300, "300"), file_entry(name_over_100, "long name"),
                                        link_entry("sym", target)}));
    CHECK(find(back, path150).content == "150");
    CHECK(find(back, path300).content == "300");
    CHECK(find(back, name_over_100).content == "long name");
    CHECK(find(back, "sym").entry.link_target == target);
}

TEST_CASE("setuid, setgid and sticky bits round-trip") {
    const auto back = read_back(tar_of({file_entry("suid", "s", 04755), file_entry("sgid", "g", 02711), dir_entry("tmp", 01777),
                                        file_entry("private", "p", 0600)}));
    CHECK(find(back, "suid").entry.mode == 04755);
    CHECK(find(back, "sgid").entry.mode == 02711);
    CHECK(find(back, "tmp").entry.mode == 01777);
    CHECK(find(back, "private").entry.mode == 0600);
}

TEST_CASE("hard links stay links to the first path in sort order") {
    SUBCASE("target sorts first") {
        const auto back = read_back(tar_of({file_entry("a/data", "shared", 0750), link_entry("z/link", "a/data", EntryType::hardlink)}));
        CHECK(find(back, "a/data").entry.type == EntryType::regular);
        CHECK(find(back, "a/data").content == "shared");
        CHECK(find(back, "z/link").entry.type == EntryType::hardlink);
        CHECK(find(back, "z/link").entry.link_target == "a/data");
        CHECK(find(back, "z/link").content.empty());
    }
    SUBCASE("target sorts after the link: roles swap") {
        auto data = file_entry("z/data", "shared", 0750);
        data.uid = 7;
        const auto back = read_back(tar_of({data, link_entry("a/link", "z/data", EntryType::hardlink),
                                            link_entry("m/link2", "a/link", EntryType::hardlink)}));
        CHECK(find(back, "a/link").entry.type == EntryType::regular);
        CHECK(find(back, "a/link").content == "shared");
        CHECK(find(back, "a/link").entry.mode == 0750);
        CHECK(find(back, "a/link").entry.uid == 7);
        CHECK(find(back, "m/link2").entry.link_target == "a/link");
        CHECK(find(back, "z/data").entry.type == EntryType::hardlink);
        CHECK(find(back, "z/data").entry.link_target == "a/link");
        CHECK(find(back, "z/data").entry.uid == 7);
    }
    SUBCASE("a target that is missing or a directory is refused") {
        CHECK_THROWS_WITH_AS((void)tar_of({link_entry("l", "nowhere", EntryType::hardlink)}),
                             "hard link \"l\" points to \"nowhere\", which is not in the layer", core::Error);
        CHECK_THROWS_WITH_AS((void)tar_of({dir_entry("d"), link_entry("l", "d", EntryType::hardlink)}),
                             "hard link \"l\" points to the directory \"d\"", core::Error);
    }
}

TEST_CASE("security.capability is written as SCHILY.xattr only and round-trips") {
    auto ping = file_entry("bin/ping", "ELF", 0755);
    const std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
    ping.xattrs["security.capability"] = cap;
    const std::string tar = tar_of({ping});
    CHECK(tar.find("SCHILY.xattr.security.capability=") != std::string::npos);
    CHECK(tar.find("LIBARCHIVE.xattr") == std::string::npos);
    const auto back = read_back(tar);
    REQUIRE(back.size() == 1);
    CHECK(back[0].entry.xattrs.at("security.capability") == cap);
    CHECK(back[0].content == "ELF");
    // The extended header's name is fixed, never derived from a pid or the time.
    CHECK(field(tar, 0, 0, 19) == std::string("bin/PaxHeader/ping\0", 19));
    CHECK(tar[156] == 'x');
}

TEST_CASE("the output does not depend on the writing process") {
    auto entries = sample_entries();
    auto ping = file_entry("bin/ping", "ELF");
    ping.xattrs["security.capability"] = "cap";
    entries.push_back(ping);
    entries.push_back(file_entry(std::string(200, 'l') + "/x", "long"));
    const std::string here = tar_of(entries);

    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        int rc = 0;
        try {
            StringSink sink;
            layer::write_tar(entries, 1'700'000'000, sink);
            core::write_all(fds[1], sink.data.data(), sink.data.size(), "pipe");
        } catch (...) {
            rc = 1;
        }
        ::_exit(rc);
    }
    ::close(fds[1]);
    std::string there;
    char buf[65536];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) there.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(there == here);
}

TEST_CASE("ids are numeric and user and group names empty") {
    auto f = file_entry("owned", "x");
    f.uid = 1000;
    f.gid = 2000;
    auto big = file_entry("big-ids", "y");
    big.uid = 3'000'000;  // over ustar's 7 octal digits: a PAX record
    big.gid = 4'000'000;
    const std::string tar = tar_of({f});
    CHECK(field(tar, 0, 0, 6) == std::string("owned\0", 6));
    CHECK(field(tar, 0, 108, 8) == std::string("001750 \0", 8));
    CHECK(field(tar, 0, 116, 8) == std::string("003720 \0", 8));
    CHECK(field(tar, 0, 265, 32) == std::string(32, '\0'));  // uname
    CHECK(field(tar, 0, 297, 32) == std::string(32, '\0'));  // gname
    const auto back = read_back(tar_of({f, big}));
    CHECK(find(back, "owned").entry.uid == 1000);
    CHECK(find(back, "owned").entry.gid == 2000);
    CHECK(find(back, "big-ids").entry.uid == 3'000'000);
    CHECK(find(back, "big-ids").entry.gid == 4'000'000);
}

TEST_CASE("device nodes and fifos round-trip") {
    TarEntry null;
    null.path = "dev/null";
    null.type = EntryType::char_device;
    null.mode = 0666;
    null.dev_major = 1;
    null.dev_minor = 3;
    TarEntry loop = null;
    loop.path = "dev/loop0";
    loop.type = EntryType::block_device;
    loop.dev_major = 7;
    loop.dev_minor = 0;
    TarEntry fifo;
    fifo.path = "run/fifo";
    fifo.type = EntryType::fifo;
    const auto back = read_back(tar_of({null, loop, fifo}));
    CHECK(find(back, "dev/null").entry.type == EntryType::char_device);
    CHECK(find(back, "dev/null").entry.dev_major == 1);
    CHECK(find(back, "dev/null").entry.dev_minor == 3);
    CHECK(find(back, "dev/loop0").entry.type == EntryType::block_device);
    CHECK(find(back, "dev/loop0").entry.dev_major == 7);
    CHECK(find(back, "run/fifo").entry.type == EntryType::fifo);
}

TEST_CASE("non-ASCII names are written as raw bytes whatever the locale") {
    const std::string utf8 = "caf\xc3\xa9/\xc3\xbc";
    const std::string invalid = "bad\xff";
    const std::string tar = tar_of({file_entry(utf8, "u"), file_entry(invalid, "i")});
    const auto back = read_back(tar);
    CHECK(find(back, utf8).content == "u");
    CHECK(find(back, invalid).content == "i");
    // The caller's locale does not matter (libarchive would otherwise convert names through it).
    if (locale_t utf8_locale = ::newlocale(LC_ALL_MASK, "C.UTF-8", locale_t{}); utf8_locale != locale_t{}) {
        const locale_t previous = ::uselocale(utf8_locale);
        const std::string in_utf8_locale = tar_of({file_entry(utf8, "u"), file_entry(invalid, "i")});
        ::uselocale(previous);
        ::freelocale(utf8_locale);
        CHECK(in_utf8_locale == tar);
    }
}

TEST_CASE("duplicate and malformed paths are refused, naming the path") {
    auto expect_invalid = [](std::vector<TarEntry> entries, const std::string& message) {
        try {
            (void)tar_of(std::move(entries));
            FAIL("no error for: " << message);
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            CHECK(std::string(e.what()) == message);
        }
    };
    expect_invalid({file_entry("a/b", "1"), dir_entry("a"), file_entry("a/b", "2")}, "duplicate tar entry path \"a/b\"");
    expect_invalid({file_entry("/etc/passwd", "")}, "tar entry path \"/etc/passwd\" is absolute");
    expect_invalid({file_entry("a/../b", "")}, "tar entry path \"a/../b\" has a \"..\" component");
    expect_invalid({file_entry("./a", "")}, "tar entry path \"./a\" has a \".\" component");
    expect_invalid({file_entry("a//b", "")}, "tar entry path \"a//b\" has an empty component");
    expect_invalid({dir_entry("a/")}, "tar entry path \"a/\" has an empty component");
    expect_invalid({file_entry("", "")}, "tar entry path is empty");
}

TEST_CASE("file contents stream from the source, checked against the size") {
    core::TempDir tmp;
    const fs::path src = tmp.path() / "payload";
    const std::string payload = compressible_bytes(3 * 1024 * 1024 + 17);  // several copy buffers
    std::ofstream(src, std::ios::binary) << payload;

    TarEntry from_file;
    from_file.path = "payload";
    from_file.source = src;
    from_file.size = static_cast<std::int64_t>(payload.size());
    from_file.mtime = 1'600'000'000;
    // A source file and the same bytes in memory give the same tar.
    CHECK(tar_of({from_file}) == tar_of({file_entry("payload", payload)}));
    const auto back = read_back(tar_of({from_file}));
    REQUIRE(back.size() == 1);
    CHECK(back[0].content == payload);

    from_file.size = 3;
    try {
        (void)tar_of({from_file});
        FAIL("no error for a size change");
    } catch (const core::Error& e) {
        CHECK(std::string(e.what()) == "tar entry \"payload\": " + src.string() +
                                           " changed size while being archived (expected 3 bytes, found " +
                                           std::to_string(payload.size()) + ")");
    }
    from_file.source = tmp.path() / "missing";
    CHECK_THROWS_AS((void)tar_of({from_file}), core::Error);
}
