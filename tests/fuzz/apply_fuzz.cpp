// libFuzzer target for layer apply. Each input is a layer blob (plain, gzip or zstd tar) applied:
//  - twice onto one tree with openat2 resolution and twice onto another with the manual walk, as
//    two layers of one image (the second pass meets its own entries: replacements, dir over dir,
//    whiteouts of existing paths, hard links to existing files; directories are finished after
//    both); both must end the same way (same error text, or the same tree);
//  - once in overlay mode onto a third tree.
// After each input the sandbox must hold exactly the three target folders (anything else means an
// entry escaped) and the process the same open fds as before. An escape, an fd leak, a resolver
// disagreement, or an exception other than core::Error aborts.
//
// The same function runs in ordinary CI over tests/fuzz/corpus/ (replay_main.cpp).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/layer/apply.hpp"
#include "safe_path.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ocibuild;

[[noreturn]] void bug(const std::string& what) {
    std::fprintf(stderr, "apply_fuzz: %s\n", what.c_str());
    std::abort();
}

/// sandbox/x/y/{merge-openat2, merge-walk, overlay}: escapes of a few ".." land in the watched levels.
struct Sandbox {
    fs::path top;
    fs::path level;  // top/x/y
    Sandbox() {
        const char* tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/ocibuild-fuzz-XXXXXX";
        if (::mkdtemp(templ.data()) == nullptr) bug("mkdtemp failed");
        top = templ;
        level = top / "x" / "y";
        fs::create_directories(level);
    }
    ~Sandbox() {
        std::error_code ec;
        for (const char* n : {"merge-openat2", "merge-walk", "overlay"}) clear(n);
        fs::remove_all(top, ec);
    }
    void clear(const char* name) const {
        core::UniqueFd dir(::open(level.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        const int err = layer::detail::remove_all(dir.get(), name, true);
        if (err != 0 && err != ENOENT) bug(std::string("cannot clear ") + name + ": " + std::strerror(err));
    }
};

Sandbox& sandbox() {
    static Sandbox s;  // one per process; removed at exit
    return s;
}

std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
    if (ec) bug("cannot list " + dir.string() + ": " + ec.message());
    return out;
}

/// What a tree holds: per path, type, mode, owner, size, link count, link target, rdev (not
/// mtimes, which differ between runs; not content, which may be a huge sparse file).
void describe(int dir_fd, const std::string& prefix, std::map<std::string, std::string>& out, int depth) {
    if (depth > 256) return;
    std::vector<std::string> names;
    if (layer::detail::list_dir(dir_fd, names) != 0) {
        out[prefix + "/"] = "unreadable";
        return;
    }
    for (const auto& n : names) {
        struct stat st {};
        if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        const std::string path = prefix.empty() ? n : prefix + "/" + n;
        std::string d = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
        if (S_ISREG(st.st_mode)) d += " size=" + std::to_string(st.st_size) + " links=" + std::to_string(st.st_nlink);
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) d += " rdev=" + std::to_string(st.st_rdev);
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            const ssize_t len = ::readlinkat(dir_fd, n.c_str(), target, sizeof target);
            d += " -> " + std::string(target, len > 0 ? static_cast<std::size_t>(len) : 0);
        }
        out[path] = d;
        if (S_ISDIR(st.st_mode)) {
            core::UniqueFd sub(::openat(dir_fd, n.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub) describe(sub.get(), path, out, depth + 1);
        }
    }
}

std::map<std::string, std::string> describe_tree(const fs::path& root) {
    std::map<std::string, std::string> out;
    core::UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (fd) describe(fd.get(), "", out, 0);
    return out;
}

std::size_t open_fds() {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
        (void)e;
        ++n;
    }
    return n;
}

/// Applies `layer` onto `root` `times` times, as consecutive layers of one image (directories
/// finished once, after the last); returns "" or the error text.
std::string apply(int layer_fd, const fs::path& root, const layer::ApplyOptions& options, int times) {
    try {
        layer::TreeApplier tree(root, options);
        for (int i = 0; i < times; ++i) {
            if (::lseek(layer_fd, 0, SEEK_SET) != 0) bug("lseek failed");
            (void)tree.apply(layer_fd, "fuzz layer");
        }
        tree.finish();
        return {};
    } catch (const core::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        bug(std::string("unexpected exception: ") + e.what());
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // A tiny gzip can claim gigabytes: cap what one input may write (writes past it fail EFBIG).
    std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {};
    limit.rlim_cur = limit.rlim_max = 64ull << 20;
    (void)::setrlimit(RLIMIT_FSIZE, &limit);
    (void)sandbox();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Sandbox& box = sandbox();
    const std::size_t fds_before = open_fds();
    core::UniqueFd layer(::memfd_create("fuzz-layer", MFD_CLOEXEC));
    if (!layer) bug("memfd_create failed");
    core::write_all(layer.get(), data, size, "memfd");

    const bool root = ::geteuid() == 0;
    layer::ApplyOptions options;
    options.mode = layer::ApplyMode::merge;
    options.ownership = root ? layer::Ownership::preserve : layer::Ownership::rootless_xattr;
    options.create_devices = false;  // never make real device nodes from random input

    const fs::path a = box.level / "merge-openat2";
    const fs::path b = box.level / "merge-walk";
    const fs::path c = box.level / "overlay";
    for (const auto& p : {a, b, c}) fs::create_directory(p);

    options.use_openat2 = true;
    const std::string error_a = apply(layer.get(), a, options, 2);
    options.use_openat2 = false;
    const std::string error_b = apply(layer.get(), b, options, 2);
    options.use_openat2 = true;
    options.mode = layer::ApplyMode::overlay;
    options.user_xattr_overlay = !root;
    (void)apply(layer.get(), c, options, 1);

    if (error_a != error_b) bug("resolvers disagree:\n  openat2: " + error_a + "\n  walk:    " + error_b);
    if (describe_tree(a) != describe_tree(b)) bug("resolvers built different trees");

    // Nothing outside the three targets.
    if (names_in(box.top) != std::set<std::string>{"x"} || names_in(box.top / "x") != std::set<std::string>{"y"} ||
        names_in(box.level) != std::set<std::string>{"merge-openat2", "merge-walk", "overlay"})
        bug("an entry escaped its target directory");

    for (const char* n : {"merge-openat2", "merge-walk", "overlay"}) box.clear(n);
    layer.reset();
    if (open_fds() != fds_before) bug("apply leaked a file descriptor");
    return 0;
}
