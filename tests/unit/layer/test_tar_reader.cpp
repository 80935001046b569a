#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include "helpers.hpp"

using namespace layer_test;

namespace {

/// One ustar header block, written by hand so the reader sees names no ocibuild writer makes.
std::string ustar_header(std::string_view name, char type, std::size_t size, std::string_view linkname = {}) {
    std::string h(512, '\0');
    auto put = [&](std::size_t offset, std::string_view text) { std::memcpy(&h[offset], text.data(), text.size()); };
    auto octal = [&](std::size_t offset, std::size_t width, unsigned long long value) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1), value);
        put(offset, std::string_view(buf, width - 1));
    };
    put(0, name);
    octal(100, 8, 0644);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, size);
    octal(136, 12, 1'600'000'000);
    h[156] = type;
    put(157, linkname);
    put(257, std::string_view("ustar\0" "00", 8));
    put(148, "        ");
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%06o", sum);
    put(148, std::string_view(buf, 6));
    h[154] = '\0';
    h[155] = ' ';
    return h;
}

std::string with_data(std::string header, std::string_view data) {
    header += data;
    header.append((512 - data.size() % 512) % 512, '\0');
    return header;
}

}  // namespace

TEST_CASE("read_tar normalises names and keeps hard links as links") {
    std::string tar = ustar_header("./", '5', 0) + ustar_header("./etc/", '5', 0) +
                      with_data(ustar_header("/etc/hosts", '0', 9), "127.0.0.1") +
                      ustar_header("./etc/hosts.bak", '1', 0, "./etc/hosts") +
                      ustar_header("etc/localhost", '2', 0, "/etc/hosts") + std::string(1024, '\0');
    const auto back = read_back(tar);
    REQUIRE(back.size() == 5);
    CHECK(back[0].entry.path.empty());  // the root itself
    CHECK(back[0].entry.type == EntryType::directory);
    CHECK(back[1].entry.path == "etc");
    CHECK(back[2].entry.path == "etc/hosts");
    CHECK(back[2].entry.size == 9);
    CHECK(back[2].entry.mtime == 1'600'000'000);
    CHECK(back[2].content == "127.0.0.1");
    CHECK(back[3].entry.type == EntryType::hardlink);
    CHECK(back[3].entry.link_target == "etc/hosts");
    CHECK(back[4].entry.type == EntryType::symlink);
    CHECK(back[4].entry.link_target == "/etc/hosts");  // symlink targets are kept verbatim
}

TEST_CASE("read_tar reads gzip and zstd compressed tars, and skips unread content") {
    const std::string tar = tar_of({file_entry("a", std::string(100000, 'a')), file_entry("b", "bee")});
    for (auto kind : {oci::Compression::gzip, oci::Compression::zstd, oci::Compression::none}) {
        CAPTURE(oci::media_type::to_string(kind));
        const std::string blob = compress({kind, 0, 1}, tar);
        auto fd = memfd_of(blob);
        std::vector<std::string> seen;
        layer::read_tar(fd.get(), "blob", [&](const TarEntry& e, const layer::ContentReader& read) {
            seen.push_back(e.path);
            if (e.path == "b") {
                StringSink s;
                read(s);
                CHECK(s.data == "bee");
            }
        });
        CHECK(seen == std::vector<std::string>{"a", "b"});
    }
}

TEST_CASE("read_tar reports a malformed archive with its name") {
    std::string tar = tar_of({file_entry("a", "x"), file_entry("b", "y")});
    tar[512 + 512 + 148] ^= 0x01;  // corrupt the checksum of "b"
    auto fd = memfd_of(tar);
    try {
        layer::read_tar(fd.get(), "layer sha256:abc", [](const TarEntry&, const layer::ContentReader&) {});
        FAIL("no error for a corrupt header");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()) == "layer sha256:abc: header after \"a\": Damaged tar archive");
    }

    std::string truncated = tar_of({file_entry("big", std::string(10000, 'z'))}).substr(0, 2048);
    auto fd2 = memfd_of(truncated);
    try {
        layer::read_tar(fd2.get(), "cut", [](const TarEntry&, const layer::ContentReader& read) {
            StringSink s;
            read(s);
        });
        FAIL("no error for a truncated archive");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()).starts_with("cut: entry \"big\": "));
    }
}

TEST_CASE("read_tar accepts an empty stream and refuses what is not a tar") {
    CHECK(read_back("").empty());
    CHECK(read_back(std::string(1024, '\0')).empty());
    auto fd = memfd_of(std::string(4096, 'x'));
    try {
        layer::read_tar(fd.get(), "notes.txt", [](const TarEntry&, const layer::ContentReader&) {});
        FAIL("no error for a text file");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::invalid_input);
        CHECK(std::string(e.what()) == "notes.txt: Unrecognized archive format");
    }
}
