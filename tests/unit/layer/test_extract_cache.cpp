// ExtractionCache: one extraction per layer, shared by concurrent callers; diff_id verified;
// failures and dead processes' leftovers never become (or stay) cache folders.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/extract_cache.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/store/store.hpp"

using namespace layer_test;
namespace fs = std::filesystem;

namespace {

std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

layer::LayerBlob sample_layer(const store::Store& store) {
    std::vector<TarEntry> entries;
    entries.push_back(dir_entry("etc"));
    entries.push_back(file_entry("etc/motd", "hello\n"));
    entries.push_back(file_entry("etc/.wh.issue", "", 0));
    entries.push_back(dir_entry("var", 0555));  // a read-only directory: removal must still work
    entries.push_back(file_entry("var/big", compressible_bytes(3 << 20)));
    entries.push_back(link_entry("etc/localtime", "/usr/share/zoneinfo/UTC"));
    return layer::write_layer(store, std::move(entries), 1'700'000'000, {});
}

/// Counts the temporary extraction folders created in a directory while it lives.
class TempDirCounter {
public:
    explicit TempDirCounter(const fs::path& dir) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
        REQUIRE(fd_.get() >= 0);
        REQUIRE(::inotify_add_watch(fd_.get(), dir.c_str(), IN_CREATE) >= 0);
    }
    int count() {
        alignas(inotify_event) char buf[65536];
        for (;;) {
            const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
            if (n <= 0) return count_;
            for (ssize_t off = 0; off < n;) {
                const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
                if ((ev->mask & IN_ISDIR) != 0 && ev->len > 0 && std::string(ev->name).rfind(".tmp-", 0) == 0) ++count_;
                off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
            }
        }
    }

private:
    core::UniqueFd fd_;
    int count_ = 0;
};

/// Root keeps the layer's owners; anyone else records them in user.rootlesscontainers.
layer::ApplyOptions apply_options() {
    layer::ApplyOptions options;
    options.mode = layer::ApplyMode::merge;  // forced to overlay by the cache
    options.ownership = ::geteuid() == 0 ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
    options.create_devices = ::geteuid() == 0;
    return options;
}

/// Whether files under `dir` take user.* xattrs (tmpfs before Linux 6.6 does not).
bool user_xattrs_work(const fs::path& dir) {
    const fs::path probe = dir / "xattr-probe";
    std::ofstream(probe).put('x');
    const bool ok = ::setxattr(probe.c_str(), "user.probe", "1", 1, 0) == 0;
    fs::remove(probe);
    return ok;
}

void age(const fs::path& p, std::chrono::hours by) {
    fs::last_write_time(p, fs::file_time_type::clock::now() - by);
}

}  // namespace

TEST_CASE("ExtractionCache extracts a layer once for concurrent callers, then reuses it") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");
    const layer::LayerBlob blob = sample_layer(store);
    const fs::path root = tmp.path() / "cache";
    const layer::ApplyOptions options = apply_options();
    layer::ExtractionCache cache(root, options);
    CHECK(cache.root() == root);
    CHECK(fs::is_directory(root));

    TempDirCounter extractions(root);
    std::array<fs::path, 4> got;
    std::array<std::string, 4> errors;
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < got.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                got[i] = cache.get(store, blob.descriptor, blob.diff_id);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (std::thread& t : threads) t.join();
    for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);

    const fs::path want = root / std::string(blob.diff_id.hex());
    for (const fs::path& p : got) CHECK(p == want);
    CHECK(extractions.count() == 1);
    CHECK(names_in(root) == std::set<std::string>{std::string(blob.diff_id.hex()), std::string(blob.diff_id.hex()) + ".lock"});

    CHECK(slurp(want / "etc/motd") == "hello\n");
    CHECK(fs::file_size(want / "var/big") == (3u << 20));
    CHECK(fs::read_symlink(want / "etc/localtime") == "/usr/share/zoneinfo/UTC");
    CHECK((fs::status(want).permissions() & fs::perms::all) == fs::perms(0755));
    if (::geteuid() == 0) {
        // Overlay form: the whiteout is a 0/0 character device, ready to be a lowerdir.
        struct stat st {};
        REQUIRE(::lstat((want / "etc/issue").c_str(), &st) == 0);
        CHECK(S_ISCHR(st.st_mode));
        CHECK(st.st_rdev == makedev(0, 0));
    }

    // Later callers, also through another cache object (another build), get it without extracting.
    layer::ExtractionCache other(root, options);
    CHECK(other.get(store, blob.descriptor, blob.diff_id) == want);
    CHECK(cache.get(store, blob.descriptor, blob.diff_id) == want);
    CHECK(extractions.count() == 1);
}

TEST_CASE("ExtractionCache refuses a layer whose content does not match the diff_id") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");
    const layer::LayerBlob blob = sample_layer(store);
    const fs::path root = tmp.path() / "cache";
    layer::ExtractionCache cache(root, apply_options());
    const core::Digest wrong = core::Digest::of("not this layer");
    try {
        (void)cache.get(store, blob.descriptor, wrong);
        FAIL("no error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::integrity);
        CHECK(std::string(e.what()) == "layer " + blob.descriptor.digest.str() + ": uncompressed content has digest " +
                                           blob.diff_id.str() + " but the config's diff_id is " + wrong.str());
    }
    // Nothing but the lock file: the temporary tree (with its read-only directory) is gone.
    CHECK(names_in(root) == std::set<std::string>{std::string(wrong.hex()) + ".lock"});

    // A blob that is no tar at all fails the same clean way.
    const oci::Descriptor junk = store.put("this is not a tar archive, not even close", "application/octet-stream");
    CHECK_THROWS_AS((void)cache.get(store, junk, wrong), core::Error);
    CHECK(names_in(root) == std::set<std::string>{std::string(wrong.hex()) + ".lock"});

    // Once the blob's true diff_id was checked (and recorded on the blob), a config naming
    // another diff_id for it is still refused: the record spares the hash only for its own digest.
    CHECK(store.recorded_diff_id(blob.descriptor.digest) == std::nullopt);
    (void)cache.get(store, blob.descriptor, blob.diff_id);
    if (user_xattrs_work(tmp.path())) CHECK(store.recorded_diff_id(blob.descriptor.digest) == blob.diff_id);
    layer::ExtractionCache other(tmp.path() / "cache2", apply_options());
    CHECK_THROWS_AS((void)other.get(store, blob.descriptor, wrong), core::Error);
    CHECK(other.get(store, blob.descriptor, blob.diff_id) == tmp.path() / "cache2" / std::string(blob.diff_id.hex()));

    // The right diff_id still works afterwards.
    CHECK(fs::is_directory(cache.get(store, blob.descriptor, blob.diff_id)));
}

TEST_CASE("ExtractionCache sweeps stale temporary folders of dead extractions") {
    core::TempDir tmp;
    const fs::path root = tmp.path() / "cache";
    const std::string hex_a(64, 'a');
    const std::string hex_b(64, 'b');
    const std::string hex_c(64, 'c');
    fs::create_directories(root);

    // Old and unlocked: a dead process's leftover, with a directory it cannot enter.
    const fs::path stale = root / (".tmp-" + hex_a + "-123-00000000deadbeef");
    fs::create_directories(stale / "usr/locked/deeper");
    std::ofstream(stale / "usr/locked/deeper/file") << "x";
    REQUIRE(::chmod((stale / "usr/locked").c_str(), 0) == 0);
    age(stale, std::chrono::hours(2));
    // Recent: may be a live extraction.
    const fs::path fresh = root / (".tmp-" + hex_b + "-124-00000000deadbeef");
    fs::create_directories(fresh);
    // Old but its lock is held: a live (slow) extraction.
    const fs::path held = root / (".tmp-" + hex_c + "-125-00000000deadbeef");
    fs::create_directories(held);
    age(held, std::chrono::hours(3));
    const core::UniqueFd lock = core::open_file(root / (hex_c + ".lock"), O_RDWR | O_CREAT);
    REQUIRE(::flock(lock.get(), LOCK_EX) == 0);
    // A complete folder is never touched.
    fs::create_directories(root / hex_a);
    age(root / hex_a, std::chrono::hours(5));

    layer::ExtractionCache cache(root, {});
    const auto names = names_in(root);
    CHECK(names.count(stale.filename().string()) == 0);
    CHECK(names.count(fresh.filename().string()) == 1);
    CHECK(names.count(held.filename().string()) == 1);
    CHECK(names.count(hex_a) == 1);
}

TEST_CASE("ExtractionCache extracts, and removes unfinished and stale trees, through the owner hook") {
    core::TempDir tmp;
    const auto store = store::Store::open(tmp.path() / "store");
    const layer::LayerBlob blob = sample_layer(store);
    const fs::path root = tmp.path() / "cache";
    fs::create_directories(root);
    const fs::path stale = root / (".tmp-" + std::string(64, 'a') + "-123-00000000deadbeef");
    fs::create_directories(stale / "x");
    age(stale, std::chrono::hours(2));

    // The build's hook runs the work in a user namespace; this one runs it here and counts.
    int calls = 0;
    layer::AsTreeOwner as_owner = [&](const std::function<void()>& work) {
        ++calls;
        work();
    };
    layer::ExtractionCache cache(root, apply_options(), as_owner);
    CHECK(calls == 1);  // the sweep of the stale tree
    CHECK_FALSE(fs::exists(stale));

    const fs::path want = root / std::string(blob.diff_id.hex());
    CHECK(cache.get(store, blob.descriptor, blob.diff_id) == want);
    CHECK(calls == 2);
    CHECK(slurp(want / "etc/motd") == "hello\n");
    CHECK(cache.get(store, blob.descriptor, blob.diff_id) == want);
    CHECK(calls == 2);  // reused: no work

    // A failure inside the hook leaves no temporary tree, and its error reaches the caller.
    const core::Digest wrong = core::Digest::of("not this layer");
    CHECK_THROWS_AS((void)cache.get(store, blob.descriptor, wrong), core::Error);
    CHECK(calls == 3);
    for (const auto& name : names_in(root)) CHECK(name.rfind(".tmp-", 0) != 0);
}
