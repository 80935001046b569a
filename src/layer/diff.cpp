#include "ocibuild/layer/diff.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ocibuild/core/error.hpp"
#include "rootless_owner.hpp"
#include "tree_walk.hpp"

// Which xattrs a diff keeps: security.capability (file capabilities, as containerd's diff writer)
// and the user.* namespace, which belongs to the image's content (the issue asks for both).
// Never: overlayfs's own bookkeeping (trusted.overlay.*, user.overlay.*: opaque, origin, impure,
// whiteout...), user.rootlesscontainers (it becomes the entry's uid/gid instead), and the other
// namespaces (security.selinux and system.posix_acl_* describe the host, trusted.* is privileged).
//
// Names starting with ".wh." are refused: in an OCI layer they mean a whiteout, so such a file
// would delete its sibling instead of being created.

namespace ocibuild::layer {
namespace {

using detail::Scanned;

constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";
constexpr const char* capability_xattr = "security.capability";

using Xattrs = std::map<std::string, std::string>;

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool keep_xattr(std::string_view name) {
    if (name == capability_xattr) return true;
    return starts_with(name, "user.") && !starts_with(name, "user.overlay.") && name != detail::rootless_xattr;
}

std::string join(const std::string& dir, std::string_view name) {
    return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

std::string quote(std::string_view path) { return "\"" + std::string(path) + "\""; }

void check_name(const std::string& archive_dir, std::string_view name) {
    if (starts_with(name, whiteout_prefix)) {
        throw core::Error(core::ErrorCategory::invalid_input,
                          "cannot put " + quote(join(archive_dir, name)) +
                              " in a layer: a name starting with \".wh.\" marks a whiteout in OCI layers");
    }
}

/// An empty regular file, mode 0, owner 0:0, mtime 0: how whiteouts and opaque markers are written
/// (buildah and containerd use the same metadata; a fixed mtime keeps layers reproducible).
Scanned marker(std::string path) {
    Scanned s;
    s.entry.path = std::move(path);
    s.entry.type = EntryType::regular;
    s.entry.mode = 0;
    return s;
}

const std::string* find(const Xattrs& xattrs, const std::string& name) {
    auto it = xattrs.find(name);
    return it == xattrs.end() ? nullptr : &it->second;
}

/// The xattrs and owner a layer records for a file with these raw xattrs and stat data.
struct LayerMeta {
    Xattrs xattrs;
    RecordedOwner owner;
};

LayerMeta layer_meta(const std::string& fs_path, const struct stat& st, const Xattrs& raw, const OwnerMap* map) {
    LayerMeta meta;
    std::optional<std::string> recorded;
    if (const std::string* v = find(raw, detail::rootless_xattr)) recorded = *v;
    // The owner on disk is a host id; what the image records is the sandbox's (an owner kept in
    // the xattr is already the image's own).
    auto [uid, gid] = (map != nullptr && *map) ? (*map)(st.st_uid, st.st_gid) : std::pair{st.st_uid, st.st_gid};
    meta.owner = detail::effective_owner(uid, gid, recorded, fs_path);
    for (const auto& [name, value] : raw) {
        if (keep_xattr(name)) meta.xattrs.emplace(name, value);
    }
    return meta;
}

/// The entry for a file of an upper dir or an `after` tree, with owner and xattrs as the layer
/// records them; nullopt for sockets.
std::optional<Scanned> layer_entry(const std::string& fs_path, std::string archive_path, const struct stat& st,
                                   const Xattrs& raw, const OwnerMap* map) {
    std::optional<Scanned> s = detail::scan_entry(fs_path, std::move(archive_path), st);
    if (!s) return s;
    LayerMeta meta = layer_meta(fs_path, st, raw, map);
    s->entry.uid = meta.owner.uid;
    s->entry.gid = meta.owner.gid;
    s->entry.xattrs = std::move(meta.xattrs);
    return s;
}

void sort_by_name(std::vector<detail::Child>& children) {
    std::sort(children.begin(), children.end(),
              [](const detail::Child& a, const detail::Child& b) { return a.name < b.name; });
}

struct stat stat_dir(const std::filesystem::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) core::throw_errno("cannot stat " + dir.string());
    if (!S_ISDIR(st.st_mode)) {
        throw core::Error(core::ErrorCategory::invalid_input, dir.string() + " is not a directory");
    }
    return st;
}

// ---- overlay upper ----

bool has_any(const Xattrs& xattrs, const char* trusted, const char* user) {
    return xattrs.count(trusted) != 0 || xattrs.count(user) != 0;
}

bool is_opaque(const Xattrs& xattrs) {
    // "y" only: kernels ≥ 6.7 write "x" on a directory that merely holds xattr whiteouts.
    for (const char* name : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
        if (const std::string* v = find(xattrs, name); v != nullptr && *v == "y") return true;
    }
    return false;
}

bool is_whiteout(const struct stat& st, const Xattrs& xattrs) {
    if (S_ISCHR(st.st_mode) && st.st_rdev == 0) return true;  // the classic form: char device 0/0
    // The xattr form (kernel ≥ 6.7, for overlays nested in overlays): an empty file so marked.
    return S_ISREG(st.st_mode) && st.st_size == 0 &&
           has_any(xattrs, "trusted.overlay.whiteout", "user.overlay.whiteout");
}

/// Upper dirs whose entries only make sense together with the lower layers: refuse them rather
/// than write a layer that silently lacks content.
void refuse_lower_references(const std::string& fs_path, const Xattrs& xattrs) {
    if (has_any(xattrs, "trusted.overlay.redirect", "user.overlay.redirect")) {
        throw core::Error(core::ErrorCategory::unsupported,
                          fs_path + " is a directory renamed by overlayfs with redirect_dir=on; mount the overlay "
                                    "with redirect_dir=off to diff its upper directory");
    }
    if (has_any(xattrs, "trusted.overlay.metacopy", "user.overlay.metacopy")) {
        throw core::Error(core::ErrorCategory::unsupported,
                          fs_path + " is a metadata-only copy-up (overlayfs metacopy=on) whose data stays in a lower "
                                    "layer; mount the overlay with metacopy=off to diff its upper directory");
    }
}

class UpperWalker {
public:
    std::vector<Scanned> found;
    const OwnerMap* map = nullptr;

    void walk(const std::string& fs_dir, const std::string& archive_dir) {
        std::vector<std::string> subdirs;
        for (detail::Child& c : detail::list_dir(fs_dir)) {
            check_name(archive_dir, c.name);
            const std::string fs_path = fs_dir + "/" + c.name;
            std::string path = join(archive_dir, c.name);
            const Xattrs xattrs = detail::read_xattrs(fs_path);
            if (is_whiteout(c.st, xattrs)) {
                found.push_back(marker(join(archive_dir, std::string(whiteout_prefix) + c.name)));
                continue;
            }
            refuse_lower_references(fs_path, xattrs);
            std::optional<Scanned> s = layer_entry(fs_path, path, c.st, xattrs, map);
            if (!s) continue;
            found.push_back(std::move(*s));
            if (S_ISDIR(c.st.st_mode)) {
                if (is_opaque(xattrs)) found.push_back(marker(join(path, opaque_marker)));
                subdirs.push_back(std::move(c.name));
            }
        }
        for (const std::string& name : subdirs) walk(fs_dir + "/" + name, join(archive_dir, name));
    }
};

// ---- two trees ----

/// Whether the layer must carry `after` in place of `before` (same file type). The quick check of
/// rsync and of containers/storage's naive diff (changes.go, statDifferent): metadata only, file
/// contents are never read, so a regular file rewritten with the same size and the same mtime to
/// the nanosecond (or whose mtime was put back, as `touch -r` does) counts as unchanged.
bool differs(const std::string& before_path, const struct stat& b, const std::string& after_path,
             const struct stat& a, const OwnerMap* map) {
    if ((b.st_mode & 07777) != (a.st_mode & 07777)) return true;
    if (b.st_mtim.tv_sec != a.st_mtim.tv_sec || b.st_mtim.tv_nsec != a.st_mtim.tv_nsec) return true;
    if (!S_ISDIR(a.st_mode) && b.st_size != a.st_size) return true;  // a directory's size means nothing
    if ((S_ISCHR(a.st_mode) || S_ISBLK(a.st_mode)) && b.st_rdev != a.st_rdev) return true;
    const LayerMeta before = layer_meta(before_path, b, detail::read_xattrs(before_path), map);
    const LayerMeta after = layer_meta(after_path, a, detail::read_xattrs(after_path), map);
    if (before.owner.uid != after.owner.uid || before.owner.gid != after.owner.gid) return true;
    if (before.xattrs != after.xattrs) return true;
    if (S_ISLNK(a.st_mode)) {
        // Same size (checked above), so only a retarget to a same-length path is left to see.
        const auto before_entry = detail::scan_entry(before_path, {}, b);
        const auto after_entry = detail::scan_entry(after_path, {}, a);
        return before_entry->entry.link_target != after_entry->entry.link_target;
    }
    return false;
}

class TreeDiffer {
public:
    std::vector<Scanned> found;
    const OwnerMap* map = nullptr;

    /// `fs_path` and everything under it, as new entries.
    void add_subtree(const std::string& fs_path, const std::string& path, const struct stat& st) {
        std::optional<Scanned> s = layer_entry(fs_path, path, st, detail::read_xattrs(fs_path), map);
        if (!s) return;
        found.push_back(std::move(*s));
        if (!S_ISDIR(st.st_mode)) return;
        for (const detail::Child& c : detail::list_dir(fs_path)) {
            check_name(path, c.name);
            add_subtree(fs_path + "/" + c.name, join(path, c.name), c.st);
        }
    }

    void diff_dir(const std::string& before_dir, const std::string& after_dir, const std::string& archive_dir) {
        std::vector<detail::Child> before = detail::list_dir(before_dir);
        std::vector<detail::Child> after = detail::list_dir(after_dir);
        sort_by_name(before);
        sort_by_name(after);
        std::size_t i = 0;
        std::size_t j = 0;
        while (i < before.size() || j < after.size()) {
            if (j == after.size() || (i < before.size() && before[i].name < after[j].name)) {
                // Removed: one whiteout, also for a whole directory (it hides everything below).
                check_name(archive_dir, before[i].name);
                found.push_back(marker(join(archive_dir, std::string(whiteout_prefix) + before[i].name)));
                ++i;
                continue;
            }
            const detail::Child& a = after[j];
            check_name(archive_dir, a.name);
            const std::string after_path = after_dir + "/" + a.name;
            const std::string path = join(archive_dir, a.name);
            if (i == before.size() || after[j].name < before[i].name) {
                add_subtree(after_path, path, a.st);  // new
                ++j;
                continue;
            }
            const detail::Child& b = before[i];
            const std::string before_path = before_dir + "/" + b.name;
            if ((b.st.st_mode & S_IFMT) != (a.st.st_mode & S_IFMT)) {
                // Another type: the new entry replaces the old one (appliers remove what is there,
                // a whole directory included), so no whiteout is needed.
                add_subtree(after_path, path, a.st);
            } else {
                if (differs(before_path, b.st, after_path, a.st, map)) {
                    std::optional<Scanned> s = layer_entry(after_path, path, a.st, detail::read_xattrs(after_path), map);
                    if (s) found.push_back(std::move(*s));
                }
                if (S_ISDIR(a.st.st_mode)) diff_dir(before_path, after_path, path);
            }
            ++i;
            ++j;
        }
    }
};

}  // namespace

std::vector<TarEntry> diff_overlay_upper(const std::filesystem::path& upper, const OwnerMap& owner_map) {
    (void)stat_dir(upper);
    const std::string root = upper.string();
    UpperWalker walker;
    walker.map = &owner_map;
    // The upper root itself is not an entry (as with scan_tree), but it can be opaque.
    if (is_opaque(detail::read_xattrs(root))) walker.found.push_back(marker(std::string(opaque_marker)));
    walker.walk(root, "");
    return detail::finish_entries(std::move(walker.found));
}

std::vector<TarEntry> diff_trees(const std::filesystem::path& before, const std::filesystem::path& after,
                                 const OwnerMap& owner_map) {
    (void)stat_dir(before);
    (void)stat_dir(after);
    TreeDiffer differ;
    differ.map = &owner_map;
    differ.diff_dir(before.string(), after.string(), "");
    return detail::finish_entries(std::move(differ.found));
}

}  // namespace ocibuild::layer
