// Applying a layer onto a directory: plain tar bytes from the blob (decompressed and hashed here,
// so the diff_id comes for free), entries from libarchive, and every filesystem change made
// through an fd of the entry's parent directory resolved inside the root (safe_path.hpp).
//
// Notes:
//  - Decompression happens in libarchive's read callback (layer_stream.hpp), not in libarchive: it
//    only ever sees plain tar, so a layer cannot pick one of libarchive's many filters, and we
//    hash the bytes the diff_id is defined over.
//  - Rejected ideas: lexical containment checks on full path strings (docker's old FollowSymlink-
//    InScope is racy and was the source of several CVEs); chroot (needs privilege, and the
//    extraction cache applies as an unprivileged user); libarchive's own archive_write_disk with
//    ARCHIVE_EXTRACT_SECURE_* (refuses rather than resolves symlinks in the root, cannot apply
//    whiteouts, and works on path strings).
//  - Overlay whiteouts (ApplyMode::overlay): a 0/0 character device. Since Linux 5.8 mknod of a
//    0/0 char device needs no CAP_MKNOD, so this works unprivileged too. Where it is refused anyway
//    (seccomp, LSM) and `user_xattr_overlay` is set, the whiteout becomes what overlayfs calls an
//    xattr whiteout (Linux 6.7+ for lower layers, the marker spelled as in 6.8+): an empty regular
//    file with user.overlay.whiteout, its directory marked user.overlay.opaque="x" (unless it is
//    already opaque, "y"). A `userxattr` mount reads the user.overlay.* names.
#include "ocibuild/layer/apply.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <unordered_set>

#include "archive_handle.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "layer_stream.hpp"
#include "file_writer.hpp"
#include "rootless_owner.hpp"
#include "safe_path.hpp"

namespace ocibuild::layer {
namespace {

using core::Error;
using core::ErrorCategory;

using detail::rootless_xattr;

/// libarchive's view of a PlainSource. C++ exceptions must not cross libarchive's C frames: they
/// are parked here and rethrown when libarchive reports the failure.
struct ReadContext {
    detail::PlainSource* source = nullptr;
    std::exception_ptr error;
};

la_ssize_t archive_read_cb(struct archive* a, void* client, const void** buffer) {
    auto* ctx = static_cast<ReadContext*>(client);
    try {
        const auto chunk = ctx->source->next();
        *buffer = chunk.data();
        return static_cast<la_ssize_t>(chunk.size());
    } catch (...) {
        ctx->error = std::current_exception();
        archive_set_error(a, EIO, "reading the layer failed");
        return -1;
    }
}

// ------------------------------------------------------------------------------------------------
// Entry paths

struct EntryPath {
    std::string path;    // cleaned, '/'-separated, "" for the root
    std::string parent;  // all but the last component
    std::string name;    // the last component
    bool escapes = false;
};

/// Lexically cleans a tar path: leading '/' dropped (as tar, docker and containerd do), "." and
/// empty components dropped, ".." removing the previous component. A ".." that would climb above
/// the root makes the path escape (refused by the caller).
EntryPath clean_path(std::string_view raw) {
    EntryPath p;
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (start <= raw.size()) {
        std::size_t slash = raw.find('/', start);
        if (slash == std::string_view::npos) slash = raw.size();
        const std::string_view c = raw.substr(start, slash - start);
        if (c == "..") {
            if (parts.empty()) {
                p.escapes = true;
                return p;
            }
            parts.pop_back();
        } else if (!c.empty() && c != ".") {
            parts.push_back(c);
        }
        start = slash + 1;
    }
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) p.path += '/';
        if (i + 1 == parts.size()) {
            p.parent = p.path.empty() ? std::string() : p.path.substr(0, p.path.size() - 1);
            p.name = std::string(parts[i]);
        }
        p.path += parts[i];
    }
    return p;
}

std::string join(const std::string& dir, std::string_view name) {
    return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

std::size_t depth_of(const std::string& path) {
    return path.empty() ? 0 : static_cast<std::size_t>(std::count(path.begin(), path.end(), '/')) + 1;
}

constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";

// ------------------------------------------------------------------------------------------------
// The applier

enum class Kind { regular, directory, symlink, hardlink, char_device, block_device, fifo, other };

struct Entry {
    struct archive_entry* ae = nullptr;
    std::string raw;  // the name as the tar spells it, for messages
    EntryPath path;
    Kind kind = Kind::other;
    mode_t mode = 0;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    struct timespec times[2] {};  // atime, mtime
};

struct PendingDir {
    mode_t mode = 0;
    bool chmod = true;  // false: made with this mode already
    bool set_times = false;
    struct timespec times[2] {};
    // Set by a directory entry applied in full: the owner it got (or recorded, rootless) and
    // whether the entry had xattrs. A later entry for the same directory with the same owner and
    // mode and no xattrs changes only its times (see make_dir).
    bool attributes_known = false;
    bool had_xattrs = false;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
};

/// Directory fds by path, the most recently used first. In a path-sorted tar an entry's parent is
/// nearly always one of the last few directories seen (its previous sibling's, the one just made,
/// or their parent), so most entries need no path resolution at all.
class DirCache {
public:
    /// The fd cached for `path`, or -1.
    int find(std::string_view path) {
        for (std::size_t i = 0; i < items_.size(); ++i) {
            if (items_[i].path != path) continue;
            std::rotate(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(i),
                        items_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            return items_.front().fd->get();
        }
        return -1;
    }
    int put(std::string path, core::UniqueFd fd) {
        if (items_.size() == capacity) items_.pop_back();
        items_.insert(items_.begin(), Item{std::move(path), std::make_shared<const core::UniqueFd>(std::move(fd))});
        return items_.front().fd->get();
    }
    /// The cached `fd` itself, shared (a file written on another thread keeps its parent open).
    std::shared_ptr<const core::UniqueFd> share(int fd) const {
        for (const auto& item : items_)
            if (item.fd->get() == fd) return item.fd;
        return nullptr;
    }
    /// The identity of the cached directory `fd` (fstat once); nullopt if not cached or not statable.
    std::optional<detail::DirId> id(int fd) {
        for (auto& item : items_) {
            if (item.fd->get() != fd) continue;
            if (!item.id) {
                struct stat st {};
                if (::fstat(fd, &st) != 0) return std::nullopt;
                item.id = detail::DirId{st.st_dev, st.st_ino};
            }
            return item.id;
        }
        return std::nullopt;
    }
    /// Forgets every path. The fds stay open until release_forgotten(): the caller may still be
    /// using one (the parent of the entry that removed something).
    void clear() {
        for (auto& item : items_) forgotten_.push_back(std::move(item.fd));
        items_.clear();
    }
    void release_forgotten() { forgotten_.clear(); }

private:
    static constexpr std::size_t capacity = 8;
    struct Item {
        std::string path;
        std::shared_ptr<const core::UniqueFd> fd;
        std::optional<detail::DirId> id;
    };
    std::vector<Item> items_;
    std::vector<std::shared_ptr<const core::UniqueFd>> forgotten_;
};

struct SkippedXattr {
    std::size_t count = 0;
    std::string example;
    std::string reason;
};

}  // namespace

namespace detail {

/// The state of one tree: its root, directories still to finish, recent directory fds. run()
/// applies one layer (its own state: the entries it touched, its stats and warnings).
class Applier final : public detail::WalkPolicy {
public:
    Applier(const std::filesystem::path& root, const ApplyOptions& options)
        : options_(options),
          root_(root, options.use_openat2),
          rootless_(options.ownership == Ownership::rootless_xattr),
          overlay_(options.mode == ApplyMode::overlay),
          euid_(::geteuid()) {}

    /// Where the sources of this tree's layers take their chunks from.
    [[nodiscard]] const std::shared_ptr<ChunkPool>& chunk_pool() const { return chunk_pool_; }

    /// After run(): the blob's bytes as read (hashed with SourceOptions::hash_blob).
    [[nodiscard]] const detail::BlobRead& blob_read() const { return blob_read_; }

    /// Applies one layer. Directory modes and times wait for finish(), after the last layer.
    ApplyStats run(std::unique_ptr<PlainSource> source, std::string_view what) {
        what_ = what;
        stats_ = {};
        blob_read_ = {};
        touched_.clear();
        skipped_xattrs_.clear();
        ReadContext ctx;
        ctx.source = source.get();
        detail::ReadArchive archive(archive_read_new());
        struct archive* a = archive.get();
        if (a == nullptr) throw Error(ErrorCategory::internal, "cannot allocate a tar reader");
        if (archive_read_support_format_tar(a) != ARCHIVE_OK || archive_read_support_format_empty(a) != ARCHIVE_OK)
            throw Error(ErrorCategory::internal, what_ + ": " + detail::archive_message(a));
        if (archive_read_open(a, &ctx, nullptr, archive_read_cb, nullptr) != ARCHIVE_OK) archive_failed(a, ctx, {});

        std::string previous;
        try {
            for (;;) {
                struct archive_entry* ae = nullptr;
                const int rc = archive_read_next_header(a, &ae);
                if (rc == ARCHIVE_EOF) break;
                // ARCHIVE_WARN is what libarchive says for names that are not UTF-8 in this
                // locale: the bytes are kept, which is what we want. RETRY (a damaged header it
                // could skip) is an error: skipping would silently drop entries.
                if (rc == ARCHIVE_RETRY || rc < ARCHIVE_WARN) archive_failed(a, ctx, previous);
                ++stats_.entries;
                apply(a, ctx, ae);
                previous = archive_entry_pathname(ae) != nullptr ? archive_entry_pathname(ae) : "";
            }
            drain_writer();
        } catch (...) {
            try {  // files handed over are written (or removed) before the caller sees the failure
                (void)writer_.drain();
            } catch (...) {
            }
            throw;
        }
        auto digests = source->finish();
        stats_.diff_id = digests.plain;
        blob_read_ = digests.blob;
        report_warnings();
        return std::move(stats_);
    }

    /// Directory modes and times, once for all layers applied: a later layer writing into a
    /// directory would change its mtime again, and a 0555 one would be in its way.
    void finish() { finish_dirs(); }

    // WalkPolicy: directories made because an entry's parent was missing.
    void created_dir(int parent_fd, const char* name, int fd, const std::string& path) override {
        if (!rootless_ && ::fchownat(parent_fd, name, 0, 0, AT_SYMLINK_NOFOLLOW) != 0)
            core::throw_errno(prefix() + "chown of parent directory \"" + path + "\"");
        if (const int err = detail::chmod_fd(fd, 0755); err != 0)
            core::throw_errno(err, prefix() + "chmod of parent directory \"" + path + "\"");
        touched_.insert(path);
    }

    // WalkPolicy: rootless trees may hold directories without owner permissions (0555 /usr, ...).
    bool unblock(int fd, const std::string& path) override {
        if (!rootless_) return false;
        struct stat st {};
        if (::fstat(fd, &st) != 0 || st.st_uid != euid_ || (st.st_mode & 0700) == 0700) return false;
        if (detail::chmod_fd(fd, (st.st_mode & 07777) | 0700) != 0) return false;
        remember_restore(path, st.st_mode & 07777);
        return true;
    }

private:
    // ---- messages

    std::string prefix() const { return what_ + ": entry \"" + current_ + "\": "; }

    [[noreturn]] void refuse(const std::string& reason) const {
        throw Error(ErrorCategory::invalid_input, prefix() + reason);
    }

    [[noreturn]] void failed(int err, const std::string& action) const { core::throw_errno(err, prefix() + action); }

    // chown fails with EINVAL for an id the user namespace does not map (rootless: more ids than
    // the subordinate ranges hold): say which ids, and where more come from.
    [[noreturn]] void chown_failed(int err, std::uint32_t uid, std::uint32_t gid) const {
        detail::throw_chown_failed(err, prefix(), uid, gid);
    }

    [[noreturn]] void archive_failed(struct archive* a, const ReadContext& ctx, const std::string& previous) const {
        if (ctx.error) std::rethrow_exception(ctx.error);
        std::string where = previous.empty() ? "first header" : "header after \"" + previous + "\"";
        throw Error(ErrorCategory::invalid_input, what_ + ": " + where + ": " + detail::archive_message(a));
    }

    // ---- one entry

    void apply(struct archive* a, ReadContext& ctx, struct archive_entry* ae) {
        dirs_.release_forgotten();  // no fd of an earlier entry is in use any more
        Entry e;
        e.ae = ae;
        const char* raw = archive_entry_pathname(ae);
        e.raw = raw != nullptr ? raw : "";
        current_ = e.raw;
        if (raw == nullptr || *raw == '\0') refuse("entry without a name");
        e.path = clean_path(e.raw);
        if (e.path.escapes) refuse("path escapes the root");
        e.kind = kind_of(ae);
        e.mode = static_cast<mode_t>(archive_entry_perm(ae)) & 07777;
        e.uid = static_cast<std::uint32_t>(archive_entry_uid(ae));
        e.gid = static_cast<std::uint32_t>(archive_entry_gid(ae));
        e.times[1] = {static_cast<time_t>(archive_entry_mtime(ae)), archive_entry_mtime_nsec(ae)};
        e.times[0] = archive_entry_atime_is_set(ae) != 0
                         ? timespec{static_cast<time_t>(archive_entry_atime(ae)), archive_entry_atime_nsec(ae)}
                         : e.times[1];
        if (e.times[0].tv_nsec < 0 || e.times[0].tv_nsec >= 1'000'000'000) e.times[0].tv_nsec = 0;
        if (e.times[1].tv_nsec < 0 || e.times[1].tv_nsec >= 1'000'000'000) e.times[1].tv_nsec = 0;

        const bool is_whiteout = std::string_view(e.path.name).starts_with(whiteout_prefix);
        // Whiteouts remove, hard links read their target: after every file handed over is written.
        if (!writer_.idle() && (e.path.path.empty() || is_whiteout || e.kind == Kind::hardlink)) drain_writer();
        if (e.path.path.empty()) {
            if (e.kind != Kind::directory) refuse("a non-directory entry cannot replace the root");
            root_entry(e);
            return;
        }
        if (is_whiteout) {
            whiteout(e);
            return;
        }
        if (!overlay_) touch(e.path.path);
        const int parent = parent_dir(e.path.parent, true);
        // The same name as a file not written yet (by inode: a path through a symlink counts).
        if (!writer_.idle()) {
            const auto id = dirs_.id(parent);
            if (!id || writer_.pending(*id, e.path.name)) drain_writer();
        }
        switch (e.kind) {
            case Kind::directory: make_dir(parent, e); break;
            case Kind::regular: write_file(a, ctx, parent, e); break;
            case Kind::symlink: make_symlink(parent, e); break;
            case Kind::hardlink: make_hardlink(parent, e); break;
            case Kind::char_device:
            case Kind::block_device: make_device(parent, e); break;
            case Kind::fifo: make_fifo(parent, e); break;
            case Kind::other: refuse("unsupported entry type (socket or unknown)");
        }
    }

    static Kind kind_of(struct archive_entry* ae) {
        if (archive_entry_hardlink(ae) != nullptr) return Kind::hardlink;
        switch (archive_entry_filetype(ae)) {
            case AE_IFREG: return Kind::regular;
            case AE_IFDIR: return Kind::directory;
            case AE_IFLNK: return Kind::symlink;
            case AE_IFCHR: return Kind::char_device;
            case AE_IFBLK: return Kind::block_device;
            case AE_IFIFO: return Kind::fifo;
            default: return Kind::other;
        }
    }

    /// The entry and its ancestors came from this layer: opaque markers and whiteouts keep them.
    void touch(const std::string& path) {
        std::string p = path;
        while (!p.empty() && touched_.insert(p).second) {
            const auto slash = p.rfind('/');
            p = slash == std::string::npos ? std::string() : p.substr(0, slash);
        }
    }

    /// An fd of the directory `path` (an entry's parent), resolved inside the root; -1 when it
    /// does not exist and `create` is false. Recent ones are cached (dirs_); anything that removes
    /// from the tree clears the cache.
    int parent_dir(const std::string& path, bool create) {
        if (const int fd = dirs_.find(path); fd >= 0) return fd;
        // A walk may pass through, or make a directory at, a name a file handed over will take.
        if (!writer_.idle()) drain_writer();
        auto r = root_.resolve_dir(path, create, this);
        if (r.status != detail::ResolveStatus::ok) {
            if (!create && (r.status == detail::ResolveStatus::missing || r.status == detail::ResolveStatus::not_directory))
                return -1;
            refuse("parent directory \"" + path + "\" " + detail::describe(r));
        }
        if (rootless_) ensure_writable(r.fd.get(), path);
        return dirs_.put(path, std::move(r.fd));
    }

    void ensure_writable(int fd, const std::string& path) {
        struct stat st {};
        if (::fstat(fd, &st) != 0) failed(errno, "stat of \"" + path + "\"");
        if ((st.st_mode & 0700) != 0700 && st.st_uid == euid_) (void)unblock(fd, path);
    }

    /// Rootless: `path`'s mode goes back to `mode` at the end, unless the layer sets one (a
    /// layer's directory entry always wins; so does the first restore of a path).
    void remember_restore(const std::string& path, mode_t mode) {
        auto [it, inserted] = pending_dirs_.try_emplace(path);
        if (inserted) it->second.mode = mode;
    }

    /// Removes whatever is at `name` (at `path`; recursively), never following symlinks. Directories
    /// that went with it are not finished: a directory made there later gets its own attributes.
    void remove_existing(int parent, const std::string& name, const std::string& path) {
        if (!writer_.idle()) drain_writer();  // what goes may hold files handed over
        dirs_.clear();
        pending_dirs_.erase(path);
        const std::string below = path + '/';
        for (auto it = pending_dirs_.lower_bound(below); it != pending_dirs_.end() && it->first.starts_with(below);)
            it = pending_dirs_.erase(it);
        const int err = detail::remove_all(parent, name.c_str(), rootless_);
        if (err != 0 && err != ENOENT) failed(err, "removing the existing \"" + name + "\"");
    }

    // ---- whiteouts

    void whiteout(const Entry& e) {
        const std::string_view target = std::string_view(e.path.name).substr(whiteout_prefix.size());
        const bool opaque = e.path.name == opaque_marker;
        if (!opaque) {
            if (target.empty()) refuse("bare whiteout \".wh.\" names nothing");
            if (target == "." || target == "..") refuse("whiteout names \"" + std::string(target) + "\"");
        }
        if (overlay_) {
            overlay_whiteout(e, opaque, std::string(target));
            return;
        }
        const int parent = parent_dir(e.path.parent, false);
        if (parent < 0) return;  // nothing below to hide
        if (opaque) {
            clear_lower(parent, e.path.parent);
            return;
        }
        const std::string path = join(e.path.parent, target);
        if (!touched_.contains(path)) {
            remove_existing(parent, std::string(target), path);
            return;
        }
        // This layer wrote `path` itself: only what lower layers left inside it goes.
        core::UniqueFd fd(::openat(parent, std::string(target).c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
        if (fd) clear_lower(fd.get(), path);
    }

    /// Removes the children of the directory `dir_fd` (at `path`) that this layer did not write,
    /// and recursively the same inside the directories it did write.
    void clear_lower(int dir_fd, const std::string& path) {
        std::vector<std::string> names;
        int err = detail::list_dir(dir_fd, names);
        if (err == EACCES && unblock(dir_fd, path)) err = detail::list_dir(dir_fd, names);
        if (err != 0) failed(err, "reading directory \"" + path + "\"");
        for (const auto& n : names) {
            const std::string child = join(path, n);
            if (!touched_.contains(child)) {
                remove_existing(dir_fd, n, child);
                continue;
            }
            core::UniqueFd sub(::openat(dir_fd, n.c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
            if (sub) clear_lower(sub.get(), child);
        }
    }

    void overlay_whiteout(const Entry& e, bool opaque, const std::string& target) {
        const int parent = parent_dir(e.path.parent, true);
        if (opaque) {
            set_overlay_opaque(parent, e.path.parent, "y");
            return;
        }
        remove_existing(parent, target, join(e.path.parent, target));
        if (::mknodat(parent, target.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0) {
            if (!rootless_ && ::fchownat(parent, target.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) != 0)
                failed(errno, "chown of the whiteout");
            return;
        }
        const int err = errno;
        if (err != EPERM || !options_.user_xattr_overlay) failed(err, "creating an overlay whiteout");
        // An xattr whiteout: an empty file marked user.overlay.whiteout, in a directory marked
        // user.overlay.opaque="x" so that overlayfs looks for them.
        core::UniqueFd fd(::openat(parent, target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!fd) failed(errno, "creating an xattr whiteout");
        if (::fsetxattr(fd.get(), "user.overlay.whiteout", "", 0, 0) != 0) {
            const int e2 = errno;
            fd.reset();
            (void)::unlinkat(parent, target.c_str(), 0);
            failed(e2, "marking the xattr whiteout");
        }
        set_overlay_opaque(parent, e.path.parent, "x");
    }

    void set_overlay_opaque(int dir_opath, const std::string& path, const char* value) {
        const std::string name = options_.user_xattr_overlay ? "user.overlay.opaque" : "trusted.overlay.opaque";
        core::UniqueFd dir = detail::reopen_dir(dir_opath);
        if (!dir) failed(errno, "opening directory \"" + path + "\"");
        if (std::strcmp(value, "x") == 0) {
            char current[4] = {};
            if (::fgetxattr(dir.get(), name.c_str(), current, sizeof current) == 1 && current[0] == 'y') return;
        }
        if (::fsetxattr(dir.get(), name.c_str(), value, 1, 0) != 0)
            failed(errno, "setting " + name + " on \"" + path + "\"");
    }

    // ---- creating entries

    void root_entry(const Entry& e) {
        core::UniqueFd dir = detail::reopen_dir(root_.fd());
        if (!dir) failed(errno, "opening the root");
        if (!rootless_ && ::fchown(dir.get(), e.uid, e.gid) != 0) chown_failed(errno, e.uid, e.gid);
        apply_xattrs(dir.get(), false, e, true);
        if (rootless_) set_owner_xattr(dir.get(), false, e, true);
        pend_dir("", e);
    }

    /// `path` got entry `e`'s owner and xattrs; its mode (when `chmod`) and times wait for the end.
    void pend_dir(const std::string& path, const Entry& e, bool chmod = true) {
        PendingDir& p = pending_dirs_[path];
        p.mode = e.mode;
        p.chmod = chmod;
        p.set_times = true;
        p.times[0] = e.times[0];
        p.times[1] = e.times[1];
        p.attributes_known = true;
        p.had_xattrs = archive_entry_xattr_count(e.ae) > 0;
        p.uid = e.uid;
        p.gid = e.gid;
    }

    /// A directory entry for a directory an earlier entry of this tree made or re-attributed
    /// with the same owner and mode, neither with xattrs: as common as the directories above each
    /// layer's files. Nothing on disk changes but its times, which wait for the end anyway: five
    /// syscalls and a chmod at the end fewer. Anything that replaced or removed it since erased
    /// its pending record (remove_existing). False when the entry needs the full treatment.
    bool same_dir_again(int parent, const Entry& e) {
        const auto it = pending_dirs_.find(e.path.path);
        if (it == pending_dirs_.end()) return false;
        PendingDir& p = it->second;
        if (!p.attributes_known || p.had_xattrs || archive_entry_xattr_count(e.ae) > 0 || p.mode != e.mode ||
            p.uid != e.uid || p.gid != e.gid)
            return false;
        if (dirs_.find(e.path.path) < 0) {  // its entries usually come next
            core::UniqueFd dir(
                ::openat(parent, e.path.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!dir) return false;
            (void)dirs_.put(e.path.path, std::move(dir));
        }
        p.set_times = true;
        p.times[0] = e.times[0];
        p.times[1] = e.times[1];
        return true;
    }

    void make_dir(int parent, const Entry& e) {
        if (same_dir_again(parent, e)) return;
        const char* name = e.path.name.c_str();
        // Made with its final mode when that leaves the owner rwx (the usual 0755: then only its
        // times wait for the end); otherwise 0700 until the end, so that its content can be written.
        const mode_t create_mode = (e.mode & 07000) == 0 && (e.mode & 0700) == 0700 ? e.mode : 0700;
        bool existed = false;
        if (::mkdirat(parent, name, create_mode) != 0) {
            if (errno != EEXIST) failed(errno, "mkdir");
            struct stat st {};
            if (::fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
                existed = true;  // dir over dir: keep it and its content, replace its attributes
                if (rootless_ && (st.st_mode & 0700) != 0700) {
                    if (::fchmodat(parent, name, (st.st_mode & 07777) | 0700, 0) != 0) failed(errno, "chmod");
                }
            } else {
                remove_existing(parent, e.path.name, e.path.path);
                if (::mkdirat(parent, name, create_mode) != 0) failed(errno, "mkdir");
            }
        }
        core::UniqueFd dir(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!dir) failed(errno, "opening the new directory");
        struct stat st {};
        if (::fstat(dir.get(), &st) != 0) failed(errno, "stat of the new directory");
        if (!rootless_ && (st.st_uid != e.uid || st.st_gid != e.gid) && ::fchown(dir.get(), e.uid, e.gid) != 0)
            chown_failed(errno, e.uid, e.gid);
        if (existed) clear_stale_xattrs(dir.get(), e);
        apply_xattrs(dir.get(), false, e, true);
        if (rootless_) set_owner_xattr(dir.get(), false, e, existed);
        // A chown leaves a directory's mode alone; the umask or a setgid parent may not have.
        pend_dir(e.path.path, e, existed || (st.st_mode & 07777) != e.mode);
        // Its entries usually come next: they need not resolve it again.
        if (dirs_.find(e.path.path) < 0) (void)dirs_.put(e.path.path, std::move(dir));
    }

    /// Waits for the files handed over; writes here those that found a directory or a symlink in
    /// their place (removing one changes what paths resolve to, and the directory cache).
    void drain_writer() {
        for (auto& t : writer_.drain()) {
            const std::string entry = std::move(current_);
            current_ = t.entry;
            remove_existing(t.parent->get(), t.name, t.path);
            if (!detail::write_file_task(t, false)) failed(EEXIST, "creating the file");
            current_ = entry;
        }
    }

    /// Calls fn(bytes, count, file offset) for each data block of the current entry (of `size`
    /// bytes; negative: unknown). Sparse files have holes between blocks.
    template <typename Fn>
    void for_each_data_block(struct archive* a, ReadContext& ctx, std::int64_t size, Fn&& fn) {
        for (;;) {
            const void* block = nullptr;
            size_t n = 0;
            la_int64_t offset = 0;
            const int rc = archive_read_data_block(a, &block, &n, &offset);
            if (rc == ARCHIVE_EOF) return;
            if (rc == ARCHIVE_RETRY || rc < ARCHIVE_WARN) {
                if (ctx.error) std::rethrow_exception(ctx.error);
                refuse("reading its data: " + detail::archive_message(a));
            }
            if (offset < 0 || (size >= 0 && offset + static_cast<std::int64_t>(n) > size))
                refuse("data block outside the file's size");
            fn(static_cast<const char*>(block), n, static_cast<std::int64_t>(offset));
        }
    }

    /// A small file without xattrs goes to the writer thread with its content read here.
    bool hand_over_file(struct archive* a, ReadContext& ctx, int parent, const Entry& e) {
        const std::int64_t size = archive_entry_size(e.ae);
        if (size < 0 || static_cast<std::uint64_t>(size) > detail::FileWriter::max_file_size ||
            archive_entry_xattr_count(e.ae) != 0)
            return false;
        detail::FileTask t = writer_.new_task();
        t.parent = dirs_.share(parent);
        const auto id = dirs_.id(parent);
        if (!t.parent || !id) return false;
        t.parent_id = *id;
        t.name = e.path.name;
        t.path = e.path.path;
        t.entry = current_;
        t.prefix = prefix();
        t.data.reserve(static_cast<std::size_t>(size));
        for_each_data_block(a, ctx, size, [&](const char* block, std::size_t n, std::int64_t offset) {
            if (n == 0) return;
            t.data.append(block, n);
            t.segments.emplace_back(offset, n);
        });
        t.size = size;
        file_attrs(e, t.attrs);
        writer_.submit(std::move(t));
        stats_.bytes += static_cast<std::uint64_t>(size);
        return true;
    }

    /// The attributes entry `e` gives a regular file, into `a` (whose buffers are reused).
    void file_attrs(const Entry& e, detail::FileAttrs& a) const {
        a.mode = e.mode;
        a.chown = !rootless_;
        a.uid = e.uid;
        a.gid = e.gid;
        a.owner_xattr.clear();  // 0:0 records nothing
        if (rootless_) a.owner_xattr = detail::encode_rootless_owner(RecordedOwner{e.uid, e.gid});
        a.times[0] = e.times[0];
        a.times[1] = e.times[1];
    }

    void write_file(struct archive* a, ReadContext& ctx, int parent, const Entry& e) {
        if (hand_over_file(a, ctx, parent, e)) return;
        const char* name = e.path.name.c_str();
        constexpr int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
        const mode_t create_mode = detail::file_create_mode(e.mode);
        core::UniqueFd fd(::openat(parent, name, flags, create_mode));
        if (!fd && errno == EEXIST) {
            remove_existing(parent, e.path.name, e.path.path);
            fd = core::UniqueFd(::openat(parent, name, flags, create_mode));
        }
        if (!fd) failed(errno, "creating the file");
        detail::PartialFile partial(parent, name, fd);  // a failure removes the file

        const std::int64_t size = archive_entry_size(e.ae);
        std::int64_t end = 0;
        for_each_data_block(a, ctx, size, [&](const char* block, std::size_t n, std::int64_t offset) {
            if (const int err = detail::write_all_at(fd.get(), block, n, offset); err != 0) failed(err, "writing");
            end = std::max(end, offset + static_cast<std::int64_t>(n));
        });
        if (size > end && ::ftruncate(fd.get(), size) != 0) failed(errno, "extending the file");
        detail::FileAttrs attrs;
        file_attrs(e, attrs);
        detail::finish_file(fd, attrs, prefix(), [&](int f) { apply_xattrs(f, false, e, false); });
        partial.keep();
        stats_.bytes += static_cast<std::uint64_t>(std::max<std::int64_t>(size, 0));
    }

    void make_symlink(int parent, const Entry& e) {
        const char* target = archive_entry_symlink(e.ae);
        if (target == nullptr || *target == '\0') refuse("symlink without a target");
        const char* name = e.path.name.c_str();
        if (::symlinkat(target, parent, name) != 0) {
            if (errno != EEXIST) failed(errno, "creating the symlink");
            remove_existing(parent, e.path.name, e.path.path);
            if (::symlinkat(target, parent, name) != 0) failed(errno, "creating the symlink");
        }
        if (!rootless_ && ::fchownat(parent, name, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0)
            chown_failed(errno, e.uid, e.gid);
        note_symlink_xattrs(e);
        if (::utimensat(parent, name, e.times, AT_SYMLINK_NOFOLLOW) != 0) failed(errno, "setting times");
    }

    void make_hardlink(int parent, const Entry& e) {
        const char* raw_target = archive_entry_hardlink(e.ae);
        const EntryPath t = clean_path(raw_target != nullptr ? raw_target : "");
        if (t.escapes) refuse("hard link target escapes the root");
        if (t.path.empty()) refuse("hard link to the root directory");
        // Resolved like any path inside the root; the target may come from a lower layer. Its last
        // component is not followed: a hard link to a symlink links the symlink.
        auto target_dir = root_.resolve_dir(t.parent, false, this);
        if (target_dir.status != detail::ResolveStatus::ok)
            refuse("hard link target \"" + t.path + "\" does not exist");
        const int tdir = target_dir.fd.get();
        const char* tname = t.name.c_str();
        struct stat target_st {};
        if (::fstatat(tdir, tname, &target_st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) refuse("hard link target \"" + t.path + "\" does not exist");
            failed(errno, "stat of the hard link target");
        }
        if (S_ISDIR(target_st.st_mode)) refuse("hard link target \"" + t.path + "\" is a directory");
        const char* name = e.path.name.c_str();
        struct stat existing {};
        if (::fstatat(parent, name, &existing, AT_SYMLINK_NOFOLLOW) == 0 && existing.st_dev == target_st.st_dev &&
            existing.st_ino == target_st.st_ino)
            return;  // already that file
        if (::linkat(tdir, tname, parent, name, 0) != 0) {
            if (errno != EEXIST) failed(errno, "linking to \"" + t.path + "\"");
            remove_existing(parent, e.path.name, e.path.path);
            if (::linkat(tdir, tname, parent, name, 0) != 0) failed(errno, "linking to \"" + t.path + "\"");
        }
    }

    void make_device(int parent, const Entry& e) {
        const char* name = e.path.name.c_str();
        const mode_t type = e.kind == Kind::char_device ? S_IFCHR : S_IFBLK;
        const dev_t dev = makedev(archive_entry_rdevmajor(e.ae), archive_entry_rdevminor(e.ae));
        if (!options_.create_devices) {
            remove_existing(parent, e.path.name, e.path.path);
            stats_.skipped_devices.push_back(e.path.path);
            return;
        }
        int rc = ::mknodat(parent, name, type | 0600, dev);
        if (rc != 0 && errno == EEXIST) {
            remove_existing(parent, e.path.name, e.path.path);
            rc = ::mknodat(parent, name, type | 0600, dev);
        }
        if (rc != 0 && errno == EPERM) {  // no CAP_MKNOD after all
            stats_.skipped_devices.push_back(e.path.path);
            return;
        }
        if (rc != 0) failed(errno, "mknod");
        node_metadata(parent, e);
    }

    void make_fifo(int parent, const Entry& e) {
        const char* name = e.path.name.c_str();
        int rc = ::mkfifoat(parent, name, 0600);
        if (rc != 0 && errno == EEXIST) {
            remove_existing(parent, e.path.name, e.path.path);
            rc = ::mkfifoat(parent, name, 0600);
        }
        if (rc != 0) failed(errno, "mkfifo");
        node_metadata(parent, e);
    }

    /// Owner, xattrs, mode and times of a device node or FIFO we just made (never opened for I/O:
    /// an O_PATH fd, xattrs through /proc/self/fd).
    void node_metadata(int parent, const Entry& e) {
        const char* name = e.path.name.c_str();
        if (!rootless_ && ::fchownat(parent, name, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0)
            chown_failed(errno, e.uid, e.gid);
        core::UniqueFd fd(::openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) failed(errno, "opening the new node");
        apply_xattrs(fd.get(), true, e, false);
        if (const int err = detail::chmod_fd(fd.get(), e.mode); err != 0) failed(err, "chmod");
        if (::utimensat(parent, name, e.times, AT_SYMLINK_NOFOLLOW) != 0) failed(errno, "setting times");
    }

    // ---- xattrs

    /// Names a layer may not set: overlayfs metadata (a lowerdir must not gain redirects, opaque
    /// markers or whiteouts from layer content), our own owner record, and SELinux labels (the
    /// host labels files, as umoci does).
    static bool reserved_xattr(std::string_view name) {
        return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") || name == rootless_xattr ||
               name == "security.selinux";
    }

    void apply_xattrs(int fd, bool opath, const Entry& e, bool is_dir) {
        archive_entry_xattr_reset(e.ae);
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        while (archive_entry_xattr_next(e.ae, &name, &value, &size) == ARCHIVE_OK) {
            if (name == nullptr) continue;
            const std::string_view n(name);
            if (reserved_xattr(n)) {
                skip_xattr(n, e.path.path, "not applied from layers");
                continue;
            }
            if (opath && n.starts_with("user.")) {
                skip_xattr(n, e.path.path, "user.* xattrs need a regular file or directory");
                continue;
            }
            const std::string v(static_cast<const char*>(value), size);
            const int err = detail::set_xattr_fd(fd, opath, std::string(n), v);
            if (err == 0) continue;
            if (err == EPERM || err == EACCES || err == ENOTSUP || err == EOPNOTSUPP || err == EINVAL) {
                skip_xattr(n, e.path.path, std::strerror(err));
                continue;
            }
            failed(err, "setting xattr " + std::string(n));
        }
        (void)is_dir;
    }

    /// Dir over dir replaces attributes: xattrs of the kinds we manage that the entry lacks go.
    void clear_stale_xattrs(int fd, const Entry& e) {
        std::vector<char> list(4096);
        ssize_t n = ::flistxattr(fd, list.data(), list.size());
        if (n < 0 && errno == ERANGE) {
            n = ::flistxattr(fd, nullptr, 0);
            if (n > 0) {
                list.resize(static_cast<std::size_t>(n));
                n = ::flistxattr(fd, list.data(), list.size());
            }
        }
        if (n <= 0) return;
        std::unordered_set<std::string> wanted;
        archive_entry_xattr_reset(e.ae);
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        while (archive_entry_xattr_next(e.ae, &name, &value, &size) == ARCHIVE_OK)
            if (name != nullptr) wanted.insert(name);
        for (std::size_t i = 0; i < static_cast<std::size_t>(n);) {
            const std::string x(list.data() + i);
            i += x.size() + 1;
            const bool managed = (x.starts_with("user.") || x == "security.capability") && !reserved_xattr(x);
            if (managed && !wanted.contains(x)) (void)::fremovexattr(fd, x.c_str());
        }
    }

    void note_symlink_xattrs(const Entry& e) {
        archive_entry_xattr_reset(e.ae);
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        while (archive_entry_xattr_next(e.ae, &name, &value, &size) == ARCHIVE_OK)
            if (name != nullptr) skip_xattr(name, e.path.path, "not set on symlinks");
    }

    void set_owner_xattr(int fd, bool opath, const Entry& e, bool may_exist) {
        // Zero ids are left out (proto3), so 0:0 is "no xattr"; never NoopID, whose meaning ("the
        // file's own id") would depend on who reads the tree.
        const std::string value = detail::encode_rootless_owner(RecordedOwner{e.uid, e.gid});
        if (value.empty()) {
            if (may_exist) (void)::fremovexattr(fd, rootless_xattr);
            return;
        }
        if (const int err = detail::set_xattr_fd(fd, opath, rootless_xattr, value); err != 0)
            failed(err, std::string("recording the owner in ") + rootless_xattr);
    }

    void skip_xattr(std::string_view name, const std::string& path, const std::string& reason) {
        auto& s = skipped_xattrs_[std::string(name)];
        if (s.count++ == 0) {
            s.example = path;
            s.reason = reason;
        }
    }

    // ---- the end

    /// Directory modes and times, deepest first, after all content is written (a 0555 directory
    /// must not stop its children from being written, and writing children changes mtimes). Every
    /// pending path is a directory this tree made or kept: whatever replaces one removes it from
    /// pending_dirs_ first (remove_existing).
    void finish_dirs() {
        std::vector<std::pair<std::string, PendingDir>> dirs(pending_dirs_.begin(), pending_dirs_.end());
        pending_dirs_.clear();
        std::stable_sort(dirs.begin(), dirs.end(),
                         [](const auto& x, const auto& y) { return depth_of(x.first) > depth_of(y.first); });
        for (const auto& [path, p] : dirs) {
            current_ = path;
            core::UniqueFd dir;
            if (path.empty()) {
                dir = detail::reopen_dir(root_.fd());
            } else {
                const EntryPath ep = clean_path(path);
                int parent = dirs_.find(ep.parent);
                if (parent < 0) {
                    auto r = root_.resolve_dir(ep.parent, false, nullptr);  // no unblocking here
                    if (r.status != detail::ResolveStatus::ok) continue;     // removed since
                    parent = dirs_.put(ep.parent, std::move(r.fd));
                }
                if (!p.chmod) {  // only its times: through the parent, the name not followed
                    if (p.set_times && ::utimensat(parent, ep.name.c_str(), p.times, AT_SYMLINK_NOFOLLOW) != 0 &&
                        errno != ENOENT)
                        failed(errno, "setting times");
                    continue;
                }
                dir = core::UniqueFd(
                    ::openat(parent, ep.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            }
            if (!dir) continue;  // gone, or replaced by a non-directory
            if (::fchmod(dir.get(), p.mode) != 0) failed(errno, "chmod");
            if (p.set_times && ::futimens(dir.get(), p.times) != 0) failed(errno, "setting times");
        }
    }

    void report_warnings() {
        if (!options_.warn) return;
        if (!stats_.skipped_devices.empty()) {
            std::string text = what_ + ": skipped " + std::to_string(stats_.skipped_devices.size()) +
                               " device node(s) (creating them needs privilege): ";
            for (std::size_t i = 0; i < stats_.skipped_devices.size() && i < 10; ++i)
                text += (i > 0 ? ", " : "") + stats_.skipped_devices[i];
            if (stats_.skipped_devices.size() > 10)
                text += ", and " + std::to_string(stats_.skipped_devices.size() - 10) + " more";
            options_.warn(text);
        }
        for (const auto& [name, s] : skipped_xattrs_) {
            options_.warn(what_ + ": xattr " + name + " not set on " + std::to_string(s.count) + " entr" +
                          (s.count == 1 ? "y" : "ies") + " (e.g. \"" + s.example + "\"): " + s.reason);
        }
    }

    ApplyOptions options_;
    std::string what_;
    detail::RootDir root_;
    bool rootless_;
    bool overlay_;
    uid_t euid_;
    ApplyStats stats_;
    detail::BlobRead blob_read_;
    std::string current_;  // the entry being applied, for messages
    std::unordered_set<std::string> touched_;
    std::map<std::string, PendingDir> pending_dirs_;
    std::map<std::string, SkippedXattr> skipped_xattrs_;
    DirCache dirs_;
    std::shared_ptr<ChunkPool> chunk_pool_ = std::make_shared<ChunkPool>();
    detail::FileWriter writer_;  // last: its thread stops first
};

}  // namespace detail

TreeApplier::TreeApplier(const std::filesystem::path& root, const ApplyOptions& options)
    : applier_(std::make_unique<detail::Applier>(root, options)) {}

TreeApplier::~TreeApplier() {
    if (finished_) return;
    try {  // after a failure: leave the tree usable (directory modes as the layers want them)
        applier_->finish();
    } catch (...) {
    }
}

ApplyStats TreeApplier::apply(int layer_fd, std::string_view what) {
    return applier_->run(detail::open_plain_source(layer_fd, std::string(what), {.pool = applier_->chunk_pool()}),
                         what);
}

struct StoredLayer::State {
    const store::Store* store = nullptr;
    oci::Descriptor layer;
    core::Digest diff_id;
    std::string what;
    bool own = false;
    bool check_blob = false;
    bool known = false;          // the diff_id needs no check (recorded, or an uncompressed blob)
    bool size_differs = false;   // (check_blob) the file's size is not the descriptor's
    core::UniqueFd blob;
    std::unique_ptr<detail::PlainSource> source;
};

StoredLayer::StoredLayer(std::unique_ptr<State> state) : state_(std::move(state)) {}
StoredLayer::StoredLayer(StoredLayer&&) noexcept = default;
StoredLayer& StoredLayer::operator=(StoredLayer&&) noexcept = default;
StoredLayer::~StoredLayer() = default;

StoredLayer TreeApplier::open_stored(const store::Store& store, const oci::Descriptor& layer,
                                     const core::Digest& diff_id, std::string_view what, BlobSource from,
                                     std::size_t read_ahead) {
    auto s = std::make_unique<StoredLayer::State>();
    s->store = &store;
    s->layer = layer;
    s->diff_id = diff_id;
    s->what = what;
    s->own = from == BlobSource::own_store;
    s->check_blob = from == BlobSource::unchecked_layout;
    s->known = layer.digest == diff_id || (s->own && store.recorded_diff_id(layer.digest) == diff_id);
    s->blob = store.open_blob(layer.digest);
    struct stat st {};
    // A blob of the wrong size is not decoded: apply_stored names it by its digest, in its turn.
    s->size_differs = s->check_blob && (::fstat(s->blob.get(), &st) != 0 || st.st_size != layer.size);
    if (!s->size_differs)
        s->source = detail::open_plain_source(
            s->blob.get(), s->what,
            {.hash_plain = !s->known,
             .hash_blob = s->check_blob,
             .read_ahead = read_ahead,
             .pool = applier_->chunk_pool()});
    return StoredLayer(std::move(s));
}

ApplyStats TreeApplier::apply_stored(const store::Store& store, const oci::Descriptor& layer,
                                     const core::Digest& diff_id, std::string_view what, BlobSource from) {
    return apply_stored(open_stored(store, layer, diff_id, what, from));
}

ApplyStats TreeApplier::apply_stored(StoredLayer opened) {
    StoredLayer::State& s = *opened.state_;
    if (s.size_differs) s.store->verify_blob(s.layer);
    ApplyStats stats;
    try {
        if (!s.source) s.source = detail::open_plain_source(s.blob.get(), s.what,
                                                            {.hash_plain = !s.known,
                                                             .hash_blob = s.check_blob,
                                                             .pool = applier_->chunk_pool()});
        s.source->shrink_read_ahead();
        stats = applier_->run(std::move(s.source), s.what);
    } catch (...) {
        // Damaged bytes usually fail the decoder or the tar reader first; the blob's own digest
        // says better what is wrong.
        if (s.check_blob) s.store->verify_blob(s.layer);
        throw;
    }
    if (s.check_blob) s.store->check_blob(s.layer, applier_->blob_read().bytes, *applier_->blob_read().digest);
    if (s.known) {
        stats.diff_id = s.diff_id;
        return stats;
    }
    if (stats.diff_id != s.diff_id)
        throw Error(ErrorCategory::integrity, s.what + ": uncompressed content has digest " + stats.diff_id.str() +
                                                  " but the config's diff_id is " + s.diff_id.str());
    if (s.own) s.store->record_diff_id(s.layer.digest, s.diff_id);
    return stats;
}

void TreeApplier::finish() {
    finished_ = true;
    applier_->finish();
}

ApplyStats apply_layer(int layer_fd, const std::filesystem::path& root, const ApplyOptions& options,
                       std::string_view what) {
    TreeApplier tree(root, options);
    auto stats = tree.apply(layer_fd, what);
    tree.finish();
    return stats;
}

ApplyStats apply_stored_layer(const store::Store& store, const oci::Descriptor& layer, const core::Digest& diff_id,
                              const std::filesystem::path& root, const ApplyOptions& options, std::string_view what,
                              BlobSource from) {
    TreeApplier tree(root, options);
    auto stats = tree.apply_stored(store, layer, diff_id, what, from);
    tree.finish();
    return stats;
}

void clear_tree(const std::filesystem::path& dir) {
    const core::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) core::throw_errno("opening " + dir.string());
    std::vector<std::string> names;
    if (const int err = detail::list_dir(fd.get(), names); err != 0) core::throw_errno(err, "reading " + dir.string());
    for (const auto& name : names)
        if (const int err = detail::remove_all(fd.get(), name.c_str(), true); err != 0 && err != ENOENT)
            core::throw_errno(err, "removing " + (dir / name).string());
}

std::optional<RecordedOwner> recorded_owner(const std::filesystem::path& path) {
    char buf[64];
    const ssize_t n = ::lgetxattr(path.c_str(), rootless_xattr, buf, sizeof buf);
    if (n < 0) {
        if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP || errno == EPERM) return std::nullopt;
        core::throw_errno("reading " + std::string(rootless_xattr) + " of " + path.string());
    }
    auto owner = detail::decode_rootless_owner(std::string_view(buf, static_cast<std::size_t>(n)));
    // NoopID ("unchanged") as umoci reads it in a rootless tree: the caller's own files are root's.
    if (owner && owner->uid == detail::rootless_noop_id) owner->uid = 0;
    if (owner && owner->gid == detail::rootless_noop_id) owner->gid = 0;
    return owner;
}

}  // namespace ocibuild::layer
