#include "tree_walk.hpp"

#include <dirent.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

#include "ocibuild/core/error.hpp"

namespace ocibuild::layer::detail {
namespace {

std::string read_symlink(const std::string& path, std::size_t hint) {
    std::string target(std::max<std::size_t>(hint, 64) + 1, '\0');
    for (;;) {
        const ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
        if (n < 0) core::throw_errno("cannot read symlink " + path);
        if (static_cast<std::size_t>(n) < target.size()) {
            target.resize(static_cast<std::size_t>(n));
            return target;
        }
        target.resize(target.size() * 2);
    }
}

}  // namespace

std::vector<Child> list_dir(const std::string& dir) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) core::throw_errno("cannot open directory " + dir);
    std::vector<Child> children;
    for (;;) {
        errno = 0;
        const struct dirent* ent = ::readdir(d.get());
        if (ent == nullptr) {
            if (errno != 0) core::throw_errno("cannot read directory " + dir);
            break;
        }
        const std::string_view name = ent->d_name;
        if (name == "." || name == "..") continue;
        Child c;
        c.name = std::string(name);
        const std::string path = dir + "/" + c.name;
        if (::lstat(path.c_str(), &c.st) != 0) core::throw_errno("cannot stat " + path);
        children.push_back(std::move(c));
    }
    return children;
}

std::optional<Scanned> scan_entry(const std::string& fs_path, std::string archive_path, const struct stat& st) {
    Scanned s;
    TarEntry& e = s.entry;
    e.path = std::move(archive_path);
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime = st.st_mtime;
    switch (st.st_mode & S_IFMT) {
        case S_IFREG:
            e.type = EntryType::regular;
            e.source = fs_path;
            e.size = st.st_size;
            s.dev = st.st_dev;
            s.ino = st.st_ino;
            s.shared_inode = st.st_nlink > 1;
            break;
        case S_IFDIR: e.type = EntryType::directory; break;
        case S_IFLNK:
            e.type = EntryType::symlink;
            e.link_target = read_symlink(fs_path, static_cast<std::size_t>(st.st_size));
            break;
        case S_IFCHR:
        case S_IFBLK:
            e.type = S_ISCHR(st.st_mode) ? EntryType::char_device : EntryType::block_device;
            e.dev_major = major(st.st_rdev);
            e.dev_minor = minor(st.st_rdev);
            break;
        case S_IFIFO: e.type = EntryType::fifo; break;
        default: return std::nullopt;  // sockets (and anything unknown) have no place in a layer
    }
    return s;
}

std::optional<std::string> read_xattr(const std::string& path, const char* name) {
    std::string value(64, '\0');
    for (;;) {
        const ssize_t n = ::lgetxattr(path.c_str(), name, value.data(), value.size());
        if (n >= 0) {
            value.resize(static_cast<std::size_t>(n));
            return value;
        }
        if (errno == ENODATA || errno == ENOTSUP) return std::nullopt;
        if (errno != ERANGE) core::throw_errno("cannot read the " + std::string(name) + " of " + path);
        // The value grew between calls (or 64 bytes were too few): ask for its size, then retry.
        const ssize_t size = ::lgetxattr(path.c_str(), name, nullptr, 0);
        value.resize(std::max<std::size_t>(value.size() * 4, size > 0 ? static_cast<std::size_t>(size) : 0));
    }
}

std::map<std::string, std::string> read_xattrs(const std::string& path) {
    std::map<std::string, std::string> xattrs;
    std::string names(256, '\0');
    ssize_t n = 0;
    for (;;) {
        n = ::llistxattr(path.c_str(), names.data(), names.size());
        if (n >= 0) break;
        if (errno == ENOTSUP) return xattrs;
        if (errno != ERANGE) core::throw_errno("cannot list the xattrs of " + path);
        const ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
        names.resize(std::max<std::size_t>(names.size() * 4, size > 0 ? static_cast<std::size_t>(size) : 0));
    }
    names.resize(static_cast<std::size_t>(n));
    std::size_t start = 0;
    while (start < names.size()) {
        std::size_t end = names.find('\0', start);
        if (end == std::string::npos) end = names.size();
        std::string name = names.substr(start, end - start);
        start = end + 1;
        if (name.empty()) continue;
        // Removed since the listing: not an error, the file simply has one xattr less now.
        if (auto value = read_xattr(path, name.c_str())) xattrs.emplace(std::move(name), std::move(*value));
    }
    return xattrs;
}

std::vector<TarEntry> finish_entries(std::vector<Scanned> found) {
    std::sort(found.begin(), found.end(),
              [](const Scanned& a, const Scanned& b) { return a.entry.path < b.entry.path; });
    // Files sharing an inode: the first path in sort order carries the data, the rest link to it.
    std::map<std::pair<dev_t, ino_t>, std::string> first_path;
    std::vector<TarEntry> entries;
    entries.reserve(found.size());
    for (Scanned& s : found) {
        if (s.shared_inode) {
            auto [it, inserted] = first_path.try_emplace({s.dev, s.ino}, s.entry.path);
            if (!inserted) {
                TarEntry& e = s.entry;
                e.type = EntryType::hardlink;
                e.link_target = it->second;
                e.source.clear();
                e.size = 0;
                e.xattrs.clear();
            }
        }
        entries.push_back(std::move(s.entry));
    }
    return entries;
}

}  // namespace ocibuild::layer::detail
