#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace ocibuild::core;

TEST_CASE("sha256 of known vectors, streamed in pieces") {
    CHECK(Digest::of("").str() == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(Digest::of("{}").str() == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    Sha256 h;
    std::string abc = "abc";
    for (char c : abc) h.update(&c, 1);
    CHECK(h.bytes() == 3);
    CHECK(h.finish().str() == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("digest parse errors point at the fault") {
    auto ok = Digest::parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    REQUIRE(ok);
    CHECK(ok->algorithm() == "sha256");
    CHECK(ok->short_hex() == "ba7816bf8f01");
    auto upper = Digest::parse("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    REQUIRE(!upper);
    CHECK(upper.error().offset == 7);
    CHECK(upper.error().message == "digest hex must be lowercase [0-9a-f]");
    auto md5 = Digest::parse("md5:abc");
    REQUIRE(!md5);
    CHECK(md5.error().message == "unsupported digest algorithm \"md5\" (only sha256)");
    auto short_hex = Digest::parse("sha256:abc");
    REQUIRE(!short_hex);
    CHECK(short_hex.error().message == "sha256 digest needs 64 hex digits, got 3");
    CHECK_THROWS_AS((void)Digest::must_parse("nope"), Error);
}

TEST_CASE("errors carry context frames, outermost first") {
    try {
        with_context("pulling x", [] {
            with_context("fetching blob sha256:ab12", [] { throw Error(ErrorCategory::unavailable, "HTTP 503"); });
        });
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "pulling x: fetching blob sha256:ab12: HTTP 503");
        CHECK(e.category() == ErrorCategory::unavailable);
        CHECK(e.message() == "HTTP 503");
    }
}

TEST_CASE("errno maps to categories and names the path") {
    TempDir dir;
    try {
        (void)open_file(dir.path() / "missing", O_RDONLY);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::not_found);
        CHECK(std::string(e.what()).find("missing: No such file or directory") != std::string::npos);
    }
}

TEST_CASE("atomic files appear whole, with the requested mode whatever the umask") {
    TempDir dir;
    auto target = dir.path() / "file.json";
    auto old = ::umask(0077);
    {
        AtomicFile f(target, 0644);
        f.write("hello");
        CHECK(!std::filesystem::exists(target));
        f.commit();
    }
    ::umask(old);
    CHECK(read_file(target) == "hello");
    struct stat st {};
    REQUIRE(::stat(target.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    {
        AtomicFile f(target);
        f.write("partial");
        // destroyed without commit: target keeps its old content, no temp file left
    }
    CHECK(read_file(target) == "hello");
    int entries = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
    CHECK(entries == 1);
}
