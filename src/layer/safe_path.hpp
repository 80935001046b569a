#pragma once
// Private to the layer module: resolving paths inside a root directory without ever leaving it,
// and the few fd-relative filesystem operations the layer applier builds on.
//
//   RootDir root(path, /*allow_openat2=*/true);
//   auto r = root.resolve_dir("usr/lib", /*create=*/true, &policy);   // an O_PATH fd inside root
//   if (r.status != ResolveStatus::ok) ... report r.status / r.err ...
//   ::openat(r.fd.get(), "libc.so.6", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
//
// Resolution semantics are those of openat2(RESOLVE_IN_ROOT): symlinks are followed as if `root`
// were "/" (absolute targets restart at the root, ".." stops at the root), magic links are not
// followed. Where the kernel lacks openat2 (or a seccomp filter refuses it), a component-by-
// component walk gives the same answers: every step is an openat(O_PATH | O_NOFOLLOW) relative
// to an fd we already hold inside the root, symlinks are read with readlinkat and their targets
// pushed back onto the walk, ".." pops the walk's own stack of fds, and at most 40 symlinks are
// followed. No path string that could leave the root is ever handed to libc.
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/fd.hpp"

namespace ocibuild::layer::detail {

enum class ResolveStatus {
    ok,
    missing,        // a component does not exist (and create was false)
    not_directory,  // a component is neither a directory nor a symlink to one
    loop,           // more than 40 symlinks
    denied,         // EACCES that the policy could not fix
    failed,         // any other errno (in `err`)
};

struct Resolved {
    core::UniqueFd fd;  // O_PATH directory fd inside the root when status == ok
    ResolveStatus status = ResolveStatus::ok;
    int err = 0;  // the errno behind a failure
};

/// What the walk asks of its caller; the policy (ownership, rootless permission fix-ups) lives in
/// the applier, the mechanism here.
class WalkPolicy {
public:
    virtual ~WalkPolicy() = default;
    /// A directory `name` was just made in `parent_fd` (mode 0755 minus umask); `fd` is an O_PATH fd
    /// of it and `path` its path below the root. May throw.
    virtual void created_dir(int parent_fd, const char* name, int fd, const std::string& path) = 0;
    /// Searching or writing the directory `fd` (an O_PATH fd, at `path` below the root) failed with
    /// EACCES. Returns true when it changed the directory's mode so that a retry may succeed.
    virtual bool unblock(int fd, const std::string& path) = 0;
};

/// The root directory of a tree being written, and path resolution inside it.
class RootDir {
public:
    /// Opens `root` (which must be a directory). With allow_openat2 false, or when the kernel
    /// answers ENOSYS/EPERM to openat2, every resolution uses the manual walk.
    RootDir(const std::filesystem::path& root, bool allow_openat2);

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] bool uses_openat2() const noexcept { return openat2_; }

    /// Resolves `path` ('/'-separated components below the root, no "." or ".." components, ""
    /// for the root itself) to a directory, following symlinks inside the root. With `create`,
    /// missing directories are made with mkdirat (also where a dangling symlink points) and
    /// reported to `policy`.
    [[nodiscard]] Resolved resolve_dir(std::string_view path, bool create, WalkPolicy* policy) const;

private:
    [[nodiscard]] Resolved walk(std::string_view path, bool create, WalkPolicy* policy) const;
    core::UniqueFd fd_;
    bool openat2_ = false;
};

/// Text for a failed resolution ("does not exist", "is not a directory", ...).
[[nodiscard]] std::string describe(const Resolved& r);

/// An fd of `fd` reopened for reading when it is an O_PATH directory fd ("." relative to it).
[[nodiscard]] core::UniqueFd reopen_dir(int opath_fd);

/// fchmod that also works on O_PATH fds (through /proc/self/fd). Returns 0 or an errno.
[[nodiscard]] int chmod_fd(int fd, mode_t mode);

/// fsetxattr that also works on O_PATH fds (through /proc/self/fd). Returns 0 or an errno.
[[nodiscard]] int set_xattr_fd(int fd, bool is_opath, const std::string& name, const std::string& value);

/// Removes `name` in `dir_fd` and, when it is a directory, everything below it, never following a
/// symlink. With `fix_permissions` (rootless trees, where the caller owns everything), a directory
/// that lacks owner rwx is given it first. Returns 0, ENOENT when nothing was there, or the errno
/// that stopped it.
[[nodiscard]] int remove_all(int dir_fd, const char* name, bool fix_permissions);

/// Names of the entries of the directory `dir_fd` (an O_PATH or normal fd), "." and ".." skipped.
/// Returns 0 or an errno.
[[nodiscard]] int list_dir(int dir_fd, std::vector<std::string>& names);

}  // namespace ocibuild::layer::detail
