#pragma once
// Private to the layer module: turning files on disk into TarEntry values, shared by scan_tree()
// (tar_writer.cpp) and the diffs (diff.cpp). Metadata comes from lstat; nothing follows symlinks.
#include <sys/stat.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/layer/tar_writer.hpp"

namespace ocibuild::layer::detail {

/// One entry found on disk, with what hard-link detection needs.
struct Scanned {
    TarEntry entry;
    dev_t dev = 0;
    ino_t ino = 0;
    bool shared_inode = false;  // a regular file with more than one link
};

/// A directory child: its name and lstat data.
struct Child {
    std::string name;
    struct stat st {};
};

/// The children of `dir` (without "." and ".."), lstat'ed, in readdir order; the directory is
/// closed before returning, so deep recursions never hold more than one descriptor.
/// Throws core::Error naming the path on I/O errors.
[[nodiscard]] std::vector<Child> list_dir(const std::string& dir);

/// The entry for the object at `fs_path` described by `st`: type, mode, uid/gid, mtime (seconds),
/// source and size of regular files, symlink target, device numbers. No xattrs. nullopt for
/// sockets and unknown types, which have no place in a layer.
[[nodiscard]] std::optional<Scanned> scan_entry(const std::string& fs_path, std::string archive_path,
                                                const struct stat& st);

/// The value of xattr `name` on `path` (not following symlinks), nullopt when it has none or the
/// filesystem has no xattrs.
[[nodiscard]] std::optional<std::string> read_xattr(const std::string& path, const char* name);

/// Every xattr of `path` that this process can list (trusted.* only with CAP_SYS_ADMIN), not
/// following symlinks; empty when the filesystem has none.
[[nodiscard]] std::map<std::string, std::string> read_xattrs(const std::string& path);

/// Sorts by path and turns every further member of a group of regular files sharing an inode into
/// a hardlink entry to the first path in sort order. Only entries in `found` are considered.
[[nodiscard]] std::vector<TarEntry> finish_entries(std::vector<Scanned> found);

}  // namespace ocibuild::layer::detail
