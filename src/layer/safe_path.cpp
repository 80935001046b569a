#include "safe_path.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ocibuild/core/error.hpp"

namespace ocibuild::layer::detail {
namespace {

constexpr int max_symlinks = 40;  // as the kernel's MAXSYMLINKS
constexpr int max_remove_depth = 4096;

int sys_openat2(int dirfd, const char* path, std::uint64_t flags, std::uint64_t resolve) {
#ifdef SYS_openat2
    struct open_how how {};
    how.flags = flags;
    how.resolve = resolve;
    for (int attempt = 0;; ++attempt) {
        const long rc = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        // EAGAIN: a concurrent rename raced the ".." check; the kernel asks us to retry.
        if (rc < 0 && (errno == EINTR || (errno == EAGAIN && attempt < 16))) continue;
        return static_cast<int>(rc);
    }
#else
    (void)dirfd, (void)path, (void)flags, (void)resolve;
    errno = ENOSYS;
    return -1;
#endif
}

ResolveStatus status_of(int err) {
    switch (err) {
        case ENOENT: return ResolveStatus::missing;
        case ENOTDIR: return ResolveStatus::not_directory;
        case ELOOP: return ResolveStatus::loop;
        case EACCES: return ResolveStatus::denied;
        default: return ResolveStatus::failed;
    }
}

Resolved fail(int err) {
    Resolved r;
    r.status = status_of(err);
    r.err = err;
    return r;
}

/// Splits `text` at '/' into `out` in reverse order (so that out.back() is the first component).
void push_reversed(std::string_view text, std::vector<std::string>& out) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t slash = text.find('/', start);
        const std::size_t end = slash == std::string_view::npos ? text.size() : slash;
        if (end > start) parts.push_back(text.substr(start, end - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) out.emplace_back(*it);
}

std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

RootDir::RootDir(const std::filesystem::path& root, bool allow_openat2) {
    fd_ = core::UniqueFd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd_) core::throw_errno("opening " + root.string());
    if (allow_openat2) {
        // One probe per tree: ENOSYS on old kernels, EPERM from seccomp profiles that predate it.
        const int probe = sys_openat2(fd_.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC,
                                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (probe >= 0) {
            ::close(probe);
            openat2_ = true;
        } else if (errno != ENOSYS && errno != EPERM && errno != EINVAL) {
            core::throw_errno("opening " + root.string());
        }
    }
}

Resolved RootDir::resolve_dir(std::string_view path, bool create, WalkPolicy* policy) const {
    if (path.empty()) {
        Resolved r;
        r.fd = core::UniqueFd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
        if (!r.fd) return fail(errno);
        return r;
    }
    if (openat2_) {
        const std::string p(path);
        const int fd = sys_openat2(fd_.get(), p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC,
                                   RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0) {
            Resolved r;
            r.fd = core::UniqueFd(fd);
            return r;
        }
        const int err = errno;
        // The walk creates what is missing, fixes permissions, and has no PATH_MAX limit.
        const bool walk_helps = (err == ENOENT && create) || (err == EACCES && policy != nullptr) || err == ENAMETOOLONG;
        if (!walk_helps) return fail(err);
    }
    return walk(path, create, policy);
}

Resolved RootDir::walk(std::string_view path, bool create, WalkPolicy* policy) const {
    struct Level {
        core::UniqueFd fd;
        std::string name;
    };
    std::vector<Level> stack;  // directories below the root, outermost first
    std::vector<std::string> pending;
    push_reversed(path, pending);
    int links = 0;

    auto current = [&] { return stack.empty() ? fd_.get() : stack.back().fd.get(); };
    auto current_path = [&] {
        std::string p;
        for (const auto& l : stack) {
            if (!p.empty()) p += '/';
            p += l.name;
        }
        return p;
    };
    auto child_path = [&](const std::string& name) {
        std::string p = current_path();
        return p.empty() ? name : p + "/" + name;
    };

    while (!pending.empty()) {
        const std::string c = std::move(pending.back());
        pending.pop_back();
        if (c.empty() || c == ".") continue;
        if (c == "..") {
            if (!stack.empty()) stack.pop_back();  // ".." never climbs above the root
            continue;
        }
        bool unblocked = false;
        bool made = false;
        int fd = -1;
        for (;;) {
            fd = ::openat(current(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0) break;
            const int err = errno;
            if (err == EINTR) continue;
            if (err == EACCES && policy != nullptr && !unblocked) {
                unblocked = true;
                if (policy->unblock(current(), current_path())) continue;
            }
            if (err == ENOENT && create && !made) {
                made = true;
                if (::mkdirat(current(), c.c_str(), 0755) == 0) {
                    core::UniqueFd created(::openat(current(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
                    if (!created) return fail(errno);
                    if (policy != nullptr) policy->created_dir(current(), c.c_str(), created.get(), child_path(c));
                    fd = created.release();
                    break;
                }
                if (errno == EEXIST) continue;  // raced with ourselves? look again
                if (errno == EACCES && policy != nullptr && !unblocked) {
                    unblocked = true;
                    made = false;
                    if (policy->unblock(current(), current_path())) continue;
                    errno = EACCES;
                }
                return fail(errno);
            }
            return fail(err);
        }
        core::UniqueFd next(fd);
        struct stat st {};
        if (::fstat(next.get(), &st) != 0) return fail(errno);
        if (S_ISDIR(st.st_mode)) {
            stack.push_back(Level{std::move(next), c});
            continue;
        }
        if (!S_ISLNK(st.st_mode)) return fail(ENOTDIR);
        if (++links > max_symlinks) return fail(ELOOP);
        std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 0) + 1, '\0');
        for (;;) {
            const ssize_t n = ::readlinkat(next.get(), "", target.data(), target.size());
            if (n < 0) return fail(errno);
            if (static_cast<std::size_t>(n) < target.size()) {
                target.resize(static_cast<std::size_t>(n));
                break;
            }
            target.resize(target.size() * 2);  // grew under us
        }
        if (target.empty()) return fail(ENOENT);
        if (target.front() == '/') stack.clear();  // absolute targets restart at the root
        push_reversed(target, pending);
    }
    Resolved r;
    if (stack.empty()) {
        r.fd = core::UniqueFd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
        if (!r.fd) return fail(errno);
    } else {
        r.fd = std::move(stack.back().fd);
    }
    return r;
}

std::string describe(const Resolved& r) {
    switch (r.status) {
        case ResolveStatus::ok: return "ok";
        case ResolveStatus::missing: return "does not exist";
        case ResolveStatus::not_directory: return "is not a directory";
        case ResolveStatus::loop: return "has too many levels of symbolic links";
        case ResolveStatus::denied: return "permission denied";
        case ResolveStatus::failed: break;
    }
    return std::strerror(r.err);
}

core::UniqueFd reopen_dir(int opath_fd) {
    return core::UniqueFd(::openat(opath_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

int chmod_fd(int fd, mode_t mode) {
    if (::fchmod(fd, mode) == 0) return 0;
    if (errno != EBADF) return errno;
    // An O_PATH fd: the magic link names exactly the inode we hold.
    return ::chmod(proc_fd_path(fd).c_str(), mode) == 0 ? 0 : errno;
}

int set_xattr_fd(int fd, bool is_opath, const std::string& name, const std::string& value) {
    if (!is_opath) return ::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) == 0 ? 0 : errno;
    return ::setxattr(proc_fd_path(fd).c_str(), name.c_str(), value.data(), value.size(), 0) == 0 ? 0 : errno;
}

int list_dir(int dir_fd, std::vector<std::string>& names) {
    names.clear();
    const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
        const int err = errno;
        ::close(fd);
        return err;
    }
    int err = 0;
    for (;;) {
        errno = 0;
        const struct dirent* e = ::readdir(d);
        if (e == nullptr) {
            err = errno;
            break;
        }
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
    }
    ::closedir(d);
    return err;
}

namespace {
int remove_tree(int dir_fd, const char* name, bool fix_permissions, int depth) {
    if (::unlinkat(dir_fd, name, 0) == 0) return 0;
    if (errno != EISDIR && errno != EPERM) return errno;  // Linux says EISDIR; POSIX allows EPERM
    struct stat st {};
    if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return EPERM;
    if (depth > max_remove_depth) return ELOOP;
    if (fix_permissions && (st.st_mode & 0700) != 0700) {
        // fchmodat follows a symlink, but `name` was just seen to be a directory and only this
        // process writes the tree.
        if (::fchmodat(dir_fd, name, (st.st_mode & 07777) | 0700, 0) != 0) return errno;
    }
    core::UniqueFd sub(::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return errno;
    std::vector<std::string> names;
    if (const int err = list_dir(sub.get(), names); err != 0) return err;
    for (const auto& child : names) {
        const int err = remove_tree(sub.get(), child.c_str(), fix_permissions, depth + 1);
        if (err != 0 && err != ENOENT) return err;
    }
    if (::unlinkat(dir_fd, name, AT_REMOVEDIR) != 0) return errno;
    return 0;
}
}  // namespace

int remove_all(int dir_fd, const char* name, bool fix_permissions) {
    return remove_tree(dir_fd, name, fix_permissions, 0);
}

}  // namespace ocibuild::layer::detail
