// diff_overlay_upper and diff_trees: entries from hand-made upper dirs, from a real overlayfs
// mount (as root), and round trips (diff → write_layer → apply_layer in merge mode onto a copy of
// the lower tree) compared with what the changed tree looked like.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "helpers.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/layer/apply.hpp"
#include "ocibuild/layer/diff.hpp"
#include "ocibuild/layer/layer_writer.hpp"
#include "ocibuild/store/store.hpp"

using namespace layer_test;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t far_epoch = 4'102'444'800;  // 2100: no mtime of the test trees is clamped

void put_file(const fs::path& p, std::string_view content, mode_t mode = 0644) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    REQUIRE(::chmod(p.c_str(), mode) == 0);
}

void set_xattr(const fs::path& p, const char* name, std::string_view value) {
    REQUIRE_MESSAGE(::lsetxattr(p.c_str(), name, value.data(), value.size(), 0) == 0,
                    "setxattr " << name << " on " << p << ": " << std::strerror(errno));
}

void sh(const std::string& command) { REQUIRE_MESSAGE(std::system(command.c_str()) == 0, command); }

void copy_tree(const fs::path& from, const fs::path& to) { sh("cp -a '" + from.string() + "' '" + to.string() + "'"); }

const TarEntry* find_entry(const std::vector<TarEntry>& entries, std::string_view path) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const TarEntry& e) { return e.path == path; });
    return it == entries.end() ? nullptr : &*it;
}

const TarEntry& get_entry(const std::vector<TarEntry>& entries, std::string_view path) {
    const TarEntry* e = find_entry(entries, path);
    REQUIRE_MESSAGE(e != nullptr, "missing entry " << path);
    return *e;
}

std::set<std::string> paths_of(const std::vector<TarEntry>& entries) {
    std::set<std::string> out;
    for (const TarEntry& e : entries) out.insert(e.path);
    return out;
}

void check_marker(const std::vector<TarEntry>& entries, std::string_view path) {
    const TarEntry& e = get_entry(entries, path);
    CHECK(e.type == EntryType::regular);
    CHECK(e.mode == 0);
    CHECK(e.uid == 0);
    CHECK(e.gid == 0);
    CHECK(e.size == 0);
    CHECK(e.source.empty());
    CHECK(e.content.empty());
}

/// Everything a user would compare between two trees, one line per path: type, mode, owner, link
/// count, size, content and mtime (seconds) of regular files, symlink targets, device numbers,
/// user.* and security.capability xattrs. Directory mtimes are left out: applying a layer
/// legitimately touches the directories it writes into.
std::map<std::string, std::string> snapshot(const fs::path& root) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        const fs::path p = it->path();
        struct stat st {};
        REQUIRE(::lstat(p.c_str(), &st) == 0);
        std::ostringstream line;
        line << std::oct << (st.st_mode & 0170000) << " " << (st.st_mode & 07777) << std::dec << " " << st.st_uid << ":"
             << st.st_gid;
        if (S_ISREG(st.st_mode)) {
            std::ifstream in(p, std::ios::binary);
            std::ostringstream content;
            content << in.rdbuf();
            line << " nlink=" << st.st_nlink << " size=" << st.st_size << " mtime=" << st.st_mtim.tv_sec
                 << " content=" << core::Digest::of(content.str()).short_hex();
        } else if (S_ISLNK(st.st_mode)) {
            line << " -> " << fs::read_symlink(p).string();
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            line << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
        }
        char names[4096];
        const ssize_t n = ::llistxattr(p.c_str(), names, sizeof names);
        for (ssize_t off = 0; n > 0 && off < n; off += static_cast<ssize_t>(std::strlen(names + off)) + 1) {
            const std::string name = names + off;
            if (name.rfind("user.", 0) != 0 && name != "security.capability") continue;
            char value[1024];
            const ssize_t len = ::lgetxattr(p.c_str(), name.c_str(), value, sizeof value);
            line << " " << name << "=" << std::string(value, static_cast<std::size_t>(std::max<ssize_t>(len, 0)));
        }
        out[p.lexically_relative(root).string()] = line.str();  // fs::relative would follow symlinks
    }
    return out;
}

void check_same_tree(const std::map<std::string, std::string>& want, const std::map<std::string, std::string>& got) {
    for (const auto& [path, line] : want) {
        auto it = got.find(path);
        if (it == got.end()) {
            CHECK_MESSAGE(false, "missing after apply: " << path << " (" << line << ")");
        } else {
            CHECK_MESSAGE(it->second == line, path << ": want " << line << ", got " << it->second);
        }
    }
    for (const auto& [path, line] : got) {
        CHECK_MESSAGE(want.count(path) == 1, "extra after apply: " << path << " (" << line << ")");
    }
}

// ---- the shared scenario: a lower tree and the changes a build step makes to it ----

void make_lower(const fs::path& root) {
    fs::create_directories(root / "etc");
    put_file(root / "etc/app.conf", "old config\n");
    put_file(root / "etc/keep.conf", "keep\n");
    put_file(root / "etc/gone.conf", "bye\n");
    fs::create_directories(root / "usr/lib");
    put_file(root / "usr/lib/libx.so.1", std::string(5000, 'L'), 0755);
    fs::create_symlink("libx.so.1", root / "usr/lib/libx.so");
    fs::create_directories(root / "usr/share/doc/pkg/examples");
    put_file(root / "usr/share/doc/pkg/README", "readme\n");
    put_file(root / "usr/share/doc/pkg/examples/ex1", "ex\n");
    fs::create_directories(root / "var/cache/app");
    put_file(root / "var/cache/app/a", "a\n");
    put_file(root / "var/cache/app/b", "b\n");
    fs::create_directories(root / "opt");
    put_file(root / "opt/tool", "a file that becomes a directory\n", 0755);
    fs::create_directories(root / "srv/data/sub");
    put_file(root / "srv/data/sub/x", "x\n");
    fs::create_directories(root / "bin");
    put_file(root / "bin/prog", "prog\n", 0755);
    fs::create_hard_link(root / "bin/prog", root / "bin/prog2");
}

/// The step: run against a merged overlay view or against a plain copy of the lower tree.
void make_changes(const fs::path& root) {
    put_file(root / "etc/new.conf", "new\n");
    put_file(root / "etc/app.conf", "new config, longer than before\n");
    REQUIRE(::chmod((root / "etc/keep.conf").c_str(), 0600) == 0);
    fs::remove(root / "etc/gone.conf");
    fs::remove_all(root / "usr/share/doc/pkg");
    fs::remove_all(root / "var/cache/app");  // removed and recreated: opaque in an overlay
    fs::create_directory(root / "var/cache/app");
    put_file(root / "var/cache/app/c", "c\n");
    fs::remove(root / "opt/tool");  // file → directory
    fs::create_directory(root / "opt/tool");
    put_file(root / "opt/tool/run", "#!/bin/sh\n", 0755);
    fs::remove_all(root / "srv/data");  // directory → file
    put_file(root / "srv/data", "now a file\n");
    put_file(root / "usr/lib/libx.so.2", std::string(6000, 'M'), 0755);
    fs::remove(root / "usr/lib/libx.so");  // retargeted, same length
    fs::create_symlink("libx.so.2", root / "usr/lib/libx.so");
    fs::create_directories(root / "home/user");
    put_file(root / "home/user/.profile", "export A=1\n");
    set_xattr(root / "home/user/.profile", "user.note", "kept");
    put_file(root / "home/user/a", "linked\n");
    fs::create_hard_link(root / "home/user/a", root / "home/user/b");
    if (::geteuid() == 0) REQUIRE(::chown((root / "home/user").c_str(), 1000, 1000) == 0);
    fs::create_directories(root / "usr/sbin");
    put_file(root / "usr/sbin/helper", "setuid\n", 04755);
    fs::create_directories(root / "run");
    REQUIRE(::mkfifo((root / "run/fifo").c_str(), 0600) == 0);
}

/// Entries every correct diff of the scenario has, whichever way it was computed.
void check_scenario_entries(const std::vector<TarEntry>& entries) {
    CHECK(get_entry(entries, "etc/new.conf").type == EntryType::regular);
    CHECK(get_entry(entries, "etc/app.conf").size == 31);
    CHECK(get_entry(entries, "etc/keep.conf").mode == 0600);
    check_marker(entries, "etc/.wh.gone.conf");
    check_marker(entries, "usr/share/doc/.wh.pkg");
    CHECK(find_entry(entries, "usr/share/doc/pkg/README") == nullptr);
    CHECK(find_entry(entries, "usr/share/doc/pkg/.wh.README") == nullptr);
    CHECK(get_entry(entries, "var/cache/app/c").type == EntryType::regular);
    CHECK(get_entry(entries, "opt/tool").type == EntryType::directory);
    CHECK(get_entry(entries, "opt/tool/run").mode == 0755);
    CHECK(get_entry(entries, "srv/data").type == EntryType::regular);
    CHECK(get_entry(entries, "usr/lib/libx.so").link_target == "libx.so.2");
    CHECK(get_entry(entries, "home/user").uid == (::geteuid() == 0 ? 1000 : ::geteuid()));
    CHECK(get_entry(entries, "home/user/.profile").xattrs == std::map<std::string, std::string>{{"user.note", "kept"}});
    CHECK(get_entry(entries, "home/user/a").type == EntryType::regular);
    CHECK(get_entry(entries, "home/user/b").type == EntryType::hardlink);
    CHECK(get_entry(entries, "home/user/b").link_target == "home/user/a");
    CHECK(get_entry(entries, "usr/sbin/helper").mode == 04755);
    CHECK(get_entry(entries, "run/fifo").type == EntryType::fifo);
    // Unchanged files stay out of the layer.
    for (const char* unchanged : {"usr/lib/libx.so.1", "bin/prog", "bin/prog2", "bin"}) {
        CHECK_MESSAGE(find_entry(entries, unchanged) == nullptr, unchanged << " is unchanged");
    }
}

/// diff → write_layer (gzip) → apply in merge mode onto a copy of `lower`; the result must look
/// like `expected` (a snapshot of the changed tree).
void check_round_trip(const fs::path& work, const fs::path& lower, std::vector<TarEntry> entries,
                      const std::map<std::string, std::string>& expected) {
    const auto store = store::Store::open(work / "store");
    const layer::LayerBlob blob = layer::write_layer(store, std::move(entries), far_epoch, {});
    const fs::path target = work / "applied";
    copy_tree(lower, target);
    layer::ApplyOptions options;
    options.mode = layer::ApplyMode::merge;
    options.create_devices = true;
    const core::UniqueFd fd = store.open_blob(blob.descriptor.digest);
    const layer::ApplyStats stats = layer::apply_layer(fd.get(), target, options, "layer under test");
    CHECK(stats.diff_id == blob.diff_id);
    check_same_tree(expected, snapshot(target));
}

/// An overlay mount, unmounted (lazily if need be) when it goes out of scope.
class OverlayMount {
public:
    OverlayMount(const fs::path& lower, const fs::path& upper, const fs::path& work, fs::path merged)
        : merged_(std::move(merged)) {
        const std::string options = "lowerdir=" + lower.string() + ",upperdir=" + upper.string() + ",workdir=" + work.string();
        mounted_ = ::mount("overlay", merged_.c_str(), "overlay", 0, options.c_str()) == 0;
        if (!mounted_) error_ = std::strerror(errno);
    }
    ~OverlayMount() { unmount(); }
    OverlayMount(const OverlayMount&) = delete;
    OverlayMount& operator=(const OverlayMount&) = delete;

    [[nodiscard]] bool mounted() const noexcept { return mounted_; }
    [[nodiscard]] const std::string& error() const noexcept { return error_; }
    void unmount() {
        if (!mounted_) return;
        if (::umount(merged_.c_str()) != 0) (void)::umount2(merged_.c_str(), MNT_DETACH);
        mounted_ = false;
    }

private:
    fs::path merged_;
    bool mounted_ = false;
    std::string error_;
};

const std::string owner_1000_1001("\x08\xe8\x07\x10\xe9\x07", 6);  // Resource{uid: 1000, gid: 1001}

}  // namespace

TEST_CASE("diff_overlay_upper: whiteouts, opaque directories, owners and xattrs of a hand-made upper") {
    if (::geteuid() != 0) {
        MESSAGE("needs root (mknod, trusted.* xattrs): skipped");
        return;
    }
    core::TempDir tmp;
    const fs::path upper = tmp.path() / "upper";
    fs::create_directories(upper / "etc");
    put_file(upper / "etc/app.conf", "x");
    REQUIRE(::mknod((upper / "etc/old.conf").c_str(), S_IFCHR | 0, makedev(0, 0)) == 0);
    // A character device that is not 0/0 is a device, not a whiteout.
    REQUIRE(::mknod((upper / "etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    fs::create_directories(upper / "var/cache");
    set_xattr(upper / "var/cache", "trusted.overlay.opaque", "y");
    put_file(upper / "var/cache/new", "n");
    fs::create_directories(upper / "var/lib");
    set_xattr(upper / "var/lib", "user.overlay.opaque", "y");  // the userxattr form
    fs::create_directories(upper / "var/log");
    set_xattr(upper / "var/log", "trusted.overlay.opaque", "x");  // "x": holds xattr whiteouts, not opaque
    set_xattr(upper / "var/log", "trusted.overlay.impure", "y");
    fs::create_directories(upper / "opt");
    put_file(upper / "opt/xw", "");
    set_xattr(upper / "opt/xw", "trusted.overlay.whiteout", "");
    put_file(upper / "opt/uw", "");
    set_xattr(upper / "opt/uw", "user.overlay.whiteout", "");
    fs::create_directories(upper / "usr/bin");
    put_file(upper / "usr/bin/tool", "tool", 0755);
    const std::string capability("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
    set_xattr(upper / "usr/bin/tool", "security.capability", capability);
    set_xattr(upper / "usr/bin/tool", "user.note", "keep me");
    set_xattr(upper / "usr/bin/tool", "trusted.overlay.origin", "bookkeeping");
    set_xattr(upper / "usr/bin/tool", "trusted.other", "host only");
    put_file(upper / "usr/bin/owned", "o");
    set_xattr(upper / "usr/bin/owned", "user.rootlesscontainers", owner_1000_1001);
    put_file(upper / "usr/bin/noop-uid", "o");
    REQUIRE(::chown((upper / "usr/bin/noop-uid").c_str(), 7, 8) == 0);
    // uid NoopID (keep the file's uid 7), gid 5.
    set_xattr(upper / "usr/bin/noop-uid", "user.rootlesscontainers", std::string("\x08\xff\xff\xff\xff\x0f\x10\x05", 8));
    fs::create_hard_link(upper / "usr/bin/tool", upper / "usr/bin/a-tool");

    const auto entries = layer::diff_overlay_upper(upper);
    CHECK(std::is_sorted(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.path < b.path; }));
    CHECK(paths_of(entries) == std::set<std::string>{
                                   "etc", "etc/app.conf", "etc/.wh.old.conf", "etc/null",
                                   "opt", "opt/.wh.xw", "opt/.wh.uw",
                                   "usr", "usr/bin", "usr/bin/a-tool", "usr/bin/noop-uid", "usr/bin/owned", "usr/bin/tool",
                                   "var", "var/cache", "var/cache/.wh..wh..opq", "var/cache/new",
                                   "var/lib", "var/lib/.wh..wh..opq", "var/log",
                               });
    check_marker(entries, "etc/.wh.old.conf");
    check_marker(entries, "opt/.wh.xw");
    check_marker(entries, "opt/.wh.uw");
    check_marker(entries, "var/cache/.wh..wh..opq");
    check_marker(entries, "var/lib/.wh..wh..opq");
    CHECK(get_entry(entries, "etc/null").type == EntryType::char_device);
    CHECK(get_entry(entries, "etc/null").dev_major == 1);
    CHECK(get_entry(entries, "etc/null").dev_minor == 3);
    CHECK(get_entry(entries, "var/cache").xattrs.empty());
    CHECK(get_entry(entries, "var/log").xattrs.empty());

    // Hard links: the first path in sort order holds data and xattrs (only the layer's kinds).
    const TarEntry& holder = get_entry(entries, "usr/bin/a-tool");
    CHECK(holder.type == EntryType::regular);
    CHECK(holder.xattrs == std::map<std::string, std::string>{{"security.capability", capability}, {"user.note", "keep me"}});
    CHECK(get_entry(entries, "usr/bin/tool").type == EntryType::hardlink);
    CHECK(get_entry(entries, "usr/bin/tool").link_target == "usr/bin/a-tool");

    const TarEntry& owned = get_entry(entries, "usr/bin/owned");
    CHECK(owned.uid == 1000);
    CHECK(owned.gid == 1001);
    CHECK(owned.xattrs.empty());
    CHECK(get_entry(entries, "usr/bin/noop-uid").uid == 7);
    CHECK(get_entry(entries, "usr/bin/noop-uid").gid == 5);

    // Through the tar writer and back: whiteouts are plain empty files with their names.
    const auto back = read_back(tar_of(entries));
    auto it = std::find_if(back.begin(), back.end(), [](const ReadBack& r) { return r.entry.path == "etc/.wh.old.conf"; });
    REQUIRE(it != back.end());
    CHECK(it->entry.type == EntryType::regular);
    CHECK(it->content.empty());
}

TEST_CASE("diff_overlay_upper: the userxattr forms of a rootless overlay, as any user") {
    core::TempDir tmp;
    const fs::path upper = tmp.path() / "upper";
    fs::create_directories(upper / "var/lib");
    set_xattr(upper / "var/lib", "user.overlay.opaque", "y");
    put_file(upper / "var/lib/state", "s");
    set_xattr(upper / "var/lib/state", "user.overlay.origin", "bookkeeping");
    set_xattr(upper / "var/lib/state", "user.rootlesscontainers", owner_1000_1001);
    set_xattr(upper / "var/lib/state", "user.mime_type", "text/plain");
    put_file(upper / "var/gone", "");
    set_xattr(upper / "var/gone", "user.overlay.whiteout", "");
    // Not a whiteout: the mark is only meaningful on an empty file.
    put_file(upper / "var/full", "data");
    set_xattr(upper / "var/full", "user.overlay.whiteout", "");

    const auto entries = layer::diff_overlay_upper(upper);
    CHECK(paths_of(entries) ==
          std::set<std::string>{"var", "var/.wh.gone", "var/full", "var/lib", "var/lib/.wh..wh..opq", "var/lib/state"});
    check_marker(entries, "var/.wh.gone");
    check_marker(entries, "var/lib/.wh..wh..opq");
    CHECK(get_entry(entries, "var/full").size == 4);
    CHECK(get_entry(entries, "var/full").xattrs.empty());
    const TarEntry& state = get_entry(entries, "var/lib/state");
    CHECK(state.uid == 1000);
    CHECK(state.gid == 1001);
    CHECK(state.xattrs == std::map<std::string, std::string>{{"user.mime_type", "text/plain"}});
    CHECK(get_entry(entries, "var/lib").xattrs.empty());
}

TEST_CASE("diff_overlay_upper refuses what it cannot represent") {
    core::TempDir tmp;
    const fs::path upper = tmp.path() / "upper";

    SUBCASE("a name that reads as a whiteout") {
        fs::create_directories(upper / "etc");
        put_file(upper / "etc/.wh.sneaky", "");
        try {
            (void)layer::diff_overlay_upper(upper);
            FAIL("no error");
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            CHECK(std::string(e.what()) ==
                  "cannot put \"etc/.wh.sneaky\" in a layer: a name starting with \".wh.\" marks a whiteout in OCI layers");
        }
    }
    SUBCASE("a directory renamed with redirect_dir") {
        if (::geteuid() != 0) return;
        fs::create_directories(upper / "moved");
        set_xattr(upper / "moved", "trusted.overlay.redirect", "/orig");
        try {
            (void)layer::diff_overlay_upper(upper);
            FAIL("no error");
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::unsupported);
            CHECK(std::string(e.what()).find("redirect_dir=off") != std::string::npos);
        }
    }
    SUBCASE("a metacopy file") {
        fs::create_directories(upper);
        put_file(upper / "f", "");
        set_xattr(upper / "f", "user.overlay.metacopy", "");
        CHECK_THROWS_AS((void)layer::diff_overlay_upper(upper), core::Error);
    }
    SUBCASE("a malformed user.rootlesscontainers") {
        fs::create_directories(upper);
        put_file(upper / "f", "");
        set_xattr(upper / "f", "user.rootlesscontainers", std::string("\x08", 1));  // truncated varint
        try {
            (void)layer::diff_overlay_upper(upper);
            FAIL("no error");
        } catch (const core::Error& e) {
            CHECK(e.category() == core::ErrorCategory::invalid_input);
            CHECK(std::string(e.what()) == "malformed user.rootlesscontainers xattr on " + (upper / "f").string());
        }
    }
    SUBCASE("not a directory") {
        fs::create_directories(tmp.path() / "d");
        put_file(tmp.path() / "d/file", "");
        CHECK_THROWS_AS((void)layer::diff_overlay_upper(tmp.path() / "d/file"), core::Error);
        CHECK_THROWS_AS((void)layer::diff_overlay_upper(tmp.path() / "missing"), core::Error);
    }
}

TEST_CASE("diff_trees: new, changed, removed and retyped entries") {
    core::TempDir tmp;
    const fs::path before = tmp.path() / "before";
    const fs::path after = tmp.path() / "after";
    fs::create_directories(before);
    make_lower(before);
    copy_tree(before, after);
    // An unchanged tree gives no entries at all.
    CHECK(layer::diff_trees(before, after).empty());

    make_changes(after);
    const auto entries = layer::diff_trees(before, after);
    CHECK(std::is_sorted(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.path < b.path; }));
    check_scenario_entries(entries);
    // Removed inside a directory that is itself still there: one whiteout per removed child.
    check_marker(entries, "var/cache/app/.wh.a");
    check_marker(entries, "var/cache/app/.wh.b");
    // Retyped entries replace what was there, without a whiteout.
    CHECK(find_entry(entries, "opt/.wh.tool") == nullptr);
    CHECK(find_entry(entries, "srv/.wh.data") == nullptr);
    CHECK(find_entry(entries, "srv/data/sub") == nullptr);
    // Parent directories come only when they changed themselves (here: their mtime).
    CHECK(find_entry(entries, "usr/share") == nullptr);
    CHECK(get_entry(entries, "usr/lib").type == EntryType::directory);

    SUBCASE("the quick check: same size and mtime counts as unchanged") {
        const fs::path f = after / "bin/prog";
        struct stat st {};
        REQUIRE(::lstat(f.c_str(), &st) == 0);
        put_file(f, "PROG\n", 0755);  // same size, new content
        const struct timespec times[2] = {st.st_atim, st.st_mtim};
        REQUIRE(::utimensat(AT_FDCWD, f.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
        CHECK(find_entry(layer::diff_trees(before, after), "bin/prog") == nullptr);
        // One nanosecond later is a change.
        struct timespec later[2] = {st.st_atim, st.st_mtim};
        later[1].tv_nsec = (later[1].tv_nsec + 1) % 1'000'000'000;
        REQUIRE(::utimensat(AT_FDCWD, f.c_str(), later, AT_SYMLINK_NOFOLLOW) == 0);
        const auto again = layer::diff_trees(before, after);
        CHECK(get_entry(again, "bin/prog").type == EntryType::regular);
        CHECK(get_entry(again, "bin/prog2").type == EntryType::hardlink);  // the same inode changed
    }
    SUBCASE("a new hard link to an unchanged file carries the data itself") {
        fs::create_hard_link(after / "usr/lib/libx.so.1", after / "usr/lib/libx-copy");
        const auto again = layer::diff_trees(before, after);
        CHECK(find_entry(again, "usr/lib/libx.so.1") == nullptr);
        CHECK(get_entry(again, "usr/lib/libx-copy").type == EntryType::regular);
        CHECK(get_entry(again, "usr/lib/libx-copy").size == 5000);
    }
    SUBCASE("owner and xattr changes") {
        if (::geteuid() != 0) return;  // chown
        REQUIRE(::chown((after / "bin/prog").c_str(), 5, 6) == 0);
        set_xattr(after / "usr/lib/libx.so.1", "user.x", "1");
        set_xattr(after / "etc", "user.rootlesscontainers", owner_1000_1001);
        const auto again = layer::diff_trees(before, after);
        CHECK(get_entry(again, "bin/prog").uid == 5);
        CHECK(get_entry(again, "bin/prog2").type == EntryType::hardlink);  // both changed: still linked
        CHECK(get_entry(again, "usr/lib/libx.so.1").xattrs.at("user.x") == "1");
        CHECK(get_entry(again, "etc").uid == 1000);
        CHECK(get_entry(again, "etc").xattrs.empty());
    }
}

TEST_CASE("diff_trees round trip: applying the diff onto the old tree gives the new one") {
    core::TempDir tmp;
    const fs::path before = tmp.path() / "before";
    const fs::path after = tmp.path() / "after";
    fs::create_directories(before);
    make_lower(before);
    copy_tree(before, after);
    make_changes(after);
    check_round_trip(tmp.path(), before, layer::diff_trees(before, after), snapshot(after));
}

TEST_CASE("diff_overlay_upper of a real overlay mount round-trips to the merged view") {
    if (::geteuid() != 0) {
        MESSAGE("needs root to mount overlayfs: skipped");
        return;
    }
    core::TempDir tmp;
    const fs::path lower = tmp.path() / "lower";
    const fs::path upper = tmp.path() / "upper";
    const fs::path work = tmp.path() / "work";
    const fs::path merged = tmp.path() / "merged";
    for (const fs::path& d : {lower, upper, work, merged}) fs::create_directories(d);
    make_lower(lower);

    std::map<std::string, std::string> expected;
    {
        OverlayMount mount(lower, upper, work, merged);
        if (!mount.mounted()) {
            MESSAGE("cannot mount overlayfs here (" << mount.error() << "): skipped");
            return;
        }
        make_changes(merged);
        expected = snapshot(merged);
        mount.unmount();
    }

    const auto entries = layer::diff_overlay_upper(upper);
    check_scenario_entries(entries);
    // What overlayfs itself records: whiteouts of the removed, opaque for the recreated directory.
    check_marker(entries, "var/cache/app/.wh..wh..opq");
    CHECK(find_entry(entries, "var/cache/app/.wh.a") == nullptr);
    check_marker(entries, "opt/tool/.wh..wh..opq");  // a directory created over a whiteout
    for (const TarEntry& e : entries) {
        for (const auto& [name, value] : e.xattrs) {
            CHECK_MESSAGE(name.find("overlay") == std::string::npos, e.path << " has " << name);
        }
    }
    check_round_trip(tmp.path(), lower, entries, expected);
}
