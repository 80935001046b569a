#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/oci/media_type.hpp"
#include "ocibuild/store/store.hpp"

using namespace ocibuild;
namespace fs = std::filesystem;

TEST_CASE("a new store is an OCI layout") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path() / "layout");
    CHECK(core::read_file(dir.path() / "layout/oci-layout") == R"({"imageLayoutVersion":"1.0.0"})");
    CHECK(s.index().manifests.empty());
    CHECK(fs::is_directory(dir.path() / "layout/blobs/sha256"));
    CHECK_THROWS_WITH_AS((void)store::Store::open(dir.path() / "none", false),
                         ((dir.path() / "none").string() + " is not an OCI image layout (no oci-layout file)").c_str(),
                         core::Error);
}

TEST_CASE("blobs are visible only after verification") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path());
    auto good = core::Digest::of("hello");
    {
        auto w = s.ingest();
        w.write("hello");
        CHECK(!s.has(good));
        auto d = w.commit("text/plain", good, 5);
        CHECK(d.digest == good);
        CHECK(d.size == 5);
    }
    CHECK(s.has(good));
    CHECK(s.read(good) == "hello");
    struct stat st {};
    REQUIRE(::stat(s.blob_path(good).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0444);

    auto w = s.ingest();
    w.write("hellO");
    try {
        (void)w.commit("text/plain", core::Digest::of("other"));
        FAIL("no throw");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::integrity);
        CHECK(std::string(e.what()) == "digest mismatch: expected " + core::Digest::of("other").str() + ", got " +
                                           core::Digest::of("hellO").str());
    }
    CHECK(!s.has(core::Digest::of("hellO")));
    CHECK(!fs::exists(dir.path() / "ingest"));  // nothing half-written remains
}

TEST_CASE("concurrent writers of the same blob do not corrupt it") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path());
    std::string data(3 << 20, 'x');
    for (std::size_t i = 0; i < data.size(); i += 7) data[i] = static_cast<char>(i % 251);
    auto expected = core::Digest::of(data);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            auto w = s.ingest();
            for (std::size_t off = 0; off < data.size(); off += 4096)
                w.write(data.data() + off, std::min<std::size_t>(4096, data.size() - off));
            (void)w.commit("application/octet-stream", expected);
        });
    for (auto& t : threads) t.join();
    CHECK(core::Digest::of(s.read(expected)) == expected);
}

TEST_CASE("tags in index.json") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path());
    auto a = s.put("a", oci::media_type::oci_manifest);
    auto b = s.put("b", oci::media_type::oci_manifest);
    s.set_tag("v1", a);
    s.set_tag("v2", a);
    s.set_tag("v1", b);  // retag
    CHECK(s.index().manifests.size() == 2);
    CHECK(s.resolve("v1").digest == b.digest);
    CHECK(s.resolve("v2").digest == a.digest);
    CHECK_THROWS_WITH_AS((void)s.resolve("v3"), ("no image tagged \"v3\" in " + dir.path().string()).c_str(),
                         core::Error);
    CHECK_THROWS_AS((void)s.resolve(""), core::Error);

    core::TempDir other_dir;
    auto other = store::Store::open(other_dir.path());
    other.import_blob(s, a);
    CHECK(other.read(a.digest) == "a");
    auto forged = b;
    forged.digest = core::Digest::of("zzz");
    // A blob that is not what its descriptor says never enters the store.
    fs::permissions(s.blob_path(b.digest).parent_path(), fs::perms::owner_all, fs::perm_options::add);
    fs::copy_file(s.blob_path(b.digest), s.blob_path(forged.digest));
    CHECK_THROWS_AS(other.import_blob(s, forged), core::Error);
    CHECK(!other.has(forged.digest));
}

TEST_CASE("verify_blob checks a blob's size and digest where it lies") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path() / "layout");
    const auto desc = s.put("layer bytes", "application/octet-stream");
    s.verify_blob(desc);

    auto wrong_size = desc;
    wrong_size.size += 1;
    CHECK_THROWS_WITH_AS(s.verify_blob(wrong_size),
                         ("blob " + desc.digest.str() + " in " + s.root().string() +
                          " has 11 bytes, not 12 as its descriptor says")
                             .c_str(),
                         core::Error);

    // The file changed after it was stored (a user's layout read in place can): refused.
    const auto path = s.blob_path(desc.digest);
    fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
    core::write_file_atomic(path, "layer bytez");
    try {
        s.verify_blob(desc);
        FAIL("no error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::integrity);
        CHECK(std::string(e.what()) == "blob " + desc.digest.str() + " in " + s.root().string() + " has digest " +
                                           core::Digest::of("layer bytez").str());
    }
    // A check its caller no longer needs stops, saying so, without a verdict.
    int asked = 0;
    CHECK_FALSE(s.verify_blob(desc, [&] { return ++asked > 1; }));
    CHECK(asked == 1);
    // check_blob: the same verdicts for what was found while reading the blob some other way.
    s.check_blob(desc, 11, core::Digest::of("layer bytes"));
    CHECK_THROWS_AS(s.check_blob(desc, 11, core::Digest::of("layer bytez")), core::Error);
    CHECK_THROWS_AS(s.check_blob(desc, 12, core::Digest::of("layer bytes")), core::Error);
}

TEST_CASE("a blob's checked diff_id is recorded on it") {
    core::TempDir dir;
    auto s = store::Store::open(dir.path() / "layout");
    const auto desc = s.put("compressed", "application/octet-stream");
    CHECK(s.recorded_diff_id(desc.digest) == std::nullopt);
    const auto diff_id = core::Digest::of("plain");
    s.record_diff_id(desc.digest, diff_id);
    // Filesystems without user xattrs (tmpfs before Linux 6.6) keep nothing: then there is nothing
    // to read back either.
    const auto recorded = s.recorded_diff_id(desc.digest);
    CHECK((recorded == std::nullopt || recorded == diff_id));
}
