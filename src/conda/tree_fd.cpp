#include "tree_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "ocibuild/core/error.hpp"

namespace ocibuild::conda::detail {

using core::Error;
using core::ErrorCategory;

std::optional<RelPath> parse_rel_path(std::string_view path) {
    if (path.empty() || path.front() == '/' || path.find('\0') != std::string_view::npos) return std::nullopt;
    RelPath out;
    std::size_t pos = 0;
    while (pos <= path.size()) {
        std::size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        const std::string_view part = path.substr(pos, end - pos);
        if (part == "..") return std::nullopt;
        if (!part.empty() && part != ".") out.components.emplace_back(part);
        pos = end + 1;
    }
    if (out.components.empty()) return std::nullopt;
    for (const std::string& c : out.components) {
        if (!out.text.empty()) out.text += '/';
        out.text += c;
    }
    return out;
}

core::UniqueFd open_root(const std::string& dir) { return core::open_file(dir, O_PATH | O_DIRECTORY); }

namespace {

[[noreturn]] void refuse_step(int err, const RelPath& path, const std::string& so_far, std::string_view what) {
    if (err == ENOTDIR || err == ELOOP) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": \"" + path.text + "\": \"" + so_far +
                                                      "\" is a symlink or not a directory, refusing to go through it");
    }
    core::throw_errno(err, std::string(what) + ": cannot open directory " + so_far);
}

/// One step of the walk: `name` in `dir_fd` as an O_PATH directory fd, or -1 with errno.
int open_step(int dir_fd, const std::string& name) {
    int fd;
    do {
        fd = ::openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/// `name` in `dir_fd` as a directory (made first with `create`), or -1 with errno.
int open_or_make(int dir_fd, const std::string& name, bool create) {
    int fd = open_step(dir_fd, name);
    if (fd < 0 && errno == ENOENT && create) {
        if (::mkdirat(dir_fd, name.c_str(), 0755) != 0 && errno != EEXIST) return -1;
        fd = open_step(dir_fd, name);
    }
    return fd;
}

core::UniqueFd walk(int root_fd, const RelPath& path, std::size_t count, bool create, std::string_view what) {
    core::UniqueFd current(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
    if (!current) core::throw_errno("cannot duplicate a directory descriptor");
    std::string so_far;
    for (std::size_t i = 0; i < count; ++i) {
        if (!so_far.empty()) so_far += '/';
        so_far += path.components[i];
        const int fd = open_or_make(current.get(), path.components[i], create);
        if (fd < 0) refuse_step(errno, path, so_far, what);
        current.reset(fd);
    }
    return current;
}

}  // namespace

int DirWalker::walk_to(const RelPath& path, std::size_t count, bool create, std::string_view what) {
    std::size_t common = 0;
    while (common < names_.size() && common < count && names_[common] == path.components[common]) ++common;
    names_.resize(common);
    fds_.resize(common);
    for (std::size_t i = common; i < count; ++i) {
        const int at = fds_.empty() ? root_fd_ : fds_.back().get();
        int fd = open_or_make(at, path.components[i], create);
        if (fd < 0 && follow_ && (errno == ELOOP || errno == ENOTDIR))
            fd = resolve(path, i + 1, create, what).release();
        if (fd < 0) {
            const int err = errno;
            std::string so_far;
            for (std::size_t j = 0; j <= i; ++j) so_far += (j > 0 ? "/" : "") + path.components[j];
            refuse_step(err, path, so_far, what);
        }
        fds_.emplace_back(fd);
        names_.push_back(path.components[i]);
    }
    return fds_.empty() ? root_fd_ : fds_.back().get();
}

core::UniqueFd DirWalker::resolve(const RelPath& path, std::size_t count, bool create, std::string_view what) const {
    constexpr int max_symlinks = 40;
    auto refuse = [&](const std::string& why) {
        return Error(ErrorCategory::invalid_input, std::string(what) + ": \"" + path.text + "\": " + why);
    };
    std::vector<std::string> todo(
        path.components.rbegin() + static_cast<std::ptrdiff_t>(path.components.size() - count),
        path.components.rend());        // reversed: the next component is last
    std::vector<core::UniqueFd> chain;  // resolved directories below the root
    std::vector<std::string> chain_names;
    int symlinks = 0;
    while (!todo.empty()) {
        const std::string name = std::move(todo.back());
        todo.pop_back();
        if (name.empty() || name == ".") continue;
        if (name == "..") {
            if (chain.empty()) throw refuse("a symlink on the way leads out of the prefix");
            chain.pop_back();
            chain_names.pop_back();
            continue;
        }
        const int at = chain.empty() ? root_fd_ : chain.back().get();
        const int fd = open_or_make(at, name, create);
        if (fd >= 0) {
            chain.emplace_back(fd);
            chain_names.push_back(name);
            continue;
        }
        const int err = errno;
        std::string so_far;
        for (const std::string& n : chain_names) so_far += n + "/";
        so_far += name;
        if (err != ELOOP && err != ENOTDIR)
            core::throw_errno(err, std::string(what) + ": cannot open directory " + so_far);
        const auto st = stat_at(at, name);
        if (!st || !S_ISLNK(st->st_mode)) throw refuse("\"" + so_far + "\" is not a directory");
        if (++symlinks > max_symlinks) throw refuse("too many levels of symlinks");
        std::string target = read_link_at(at, name, what);
        if (target.starts_with("/")) {
            // Absolute: meaningful only inside the prefix, whose image path we know.
            if (target != absolute_root_ && !target.starts_with(absolute_root_ + "/")) {
                throw refuse("\"" + so_far + "\" is a symlink to " + target + ", outside the prefix");
            }
            target.erase(0, absolute_root_.size());
            chain.clear();
            chain_names.clear();
        }
        std::vector<std::string> parts;
        std::size_t pos = 0;
        while (pos <= target.size()) {
            std::size_t end = target.find('/', pos);
            if (end == std::string::npos) end = target.size();
            parts.push_back(target.substr(pos, end - pos));
            pos = end + 1;
        }
        todo.insert(todo.end(), parts.rbegin(), parts.rend());
    }
    if (chain.empty()) {
        core::UniqueFd root(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
        if (!root) core::throw_errno("cannot duplicate a directory descriptor");
        return root;
    }
    return std::move(chain.back());
}

int DirWalker::parent(const RelPath& path, bool create, std::string_view what) {
    return walk_to(path, path.components.size() - 1, create, what);
}

int DirWalker::dir(const RelPath& path, bool create, std::string_view what) {
    return walk_to(path, path.components.size(), create, what);
}

core::UniqueFd open_parent(int root_fd, const RelPath& path, bool create, std::string_view what) {
    return walk(root_fd, path, path.components.size() - 1, create, what);
}

core::UniqueFd open_dir(int root_fd, const RelPath& path, bool create, std::string_view what) {
    return walk(root_fd, path, path.components.size(), create, what);
}

void make_dirs(int root_fd, const RelPath& path, std::string_view what) {
    (void)walk(root_fd, path, path.components.size(), true, what);
}

void write_new_file(int root_fd, const RelPath& path, std::string_view content, mode_t mode, std::string_view what) {
    const core::UniqueFd parent = open_parent(root_fd, path, /*create=*/true, what);
    remove_at(parent.get(), path.name(), what);
    int fd;
    do {
        fd = ::openat(parent.get(), path.name().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) core::throw_errno(std::string(what) + ": cannot create " + path.text);
    const core::UniqueFd owned(fd);
    core::write_all(fd, content.data(), content.size(), path.text);
    if (::fchmod(fd, mode) != 0) core::throw_errno(std::string(what) + ": cannot chmod " + path.text);
}

std::optional<struct stat> stat_at(int dir_fd, const std::string& name) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return st;
    if (errno == ENOENT) return std::nullopt;
    core::throw_errno("cannot stat " + name);
}

void remove_at(int dir_fd, const std::string& name, std::string_view what) {
    const auto st = stat_at(dir_fd, name);
    if (!st) return;
    if (S_ISDIR(st->st_mode)) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": a directory is in the way (\"" + name + "\")");
    }
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT)
        core::throw_errno(std::string(what) + ": cannot remove " + name);
}

std::string read_link_at(int dir_fd, const std::string& name, std::string_view what) {
    std::string buf(256, '\0');
    for (;;) {
        const ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf.data(), buf.size());
        if (n < 0) core::throw_errno(std::string(what) + ": cannot read symlink " + name);
        if (static_cast<std::size_t>(n) < buf.size()) {
            buf.resize(static_cast<std::size_t>(n));
            return buf;
        }
        buf.resize(buf.size() * 2);
    }
}

}  // namespace ocibuild::conda::detail
