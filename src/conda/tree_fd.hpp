#pragma once
// Private to the conda module: paths inside a package or a prefix, checked and resolved without
// ever following a symlink. Packages come from the network: their paths are refused when absolute
// or when they hold "..", and every directory on the way is opened with O_NOFOLLOW, so a symlink
// a package made (in the cache or in the prefix) can never redirect a later write or read.
#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/fd.hpp"

namespace ocibuild::conda::detail {

/// A checked relative path: '/'-separated, no empty, "." or ".." components, not absolute.
struct RelPath {
    std::string text;                     // normalised ("a/b/c")
    std::vector<std::string> components;  // {"a", "b", "c"}

    [[nodiscard]] const std::string& name() const { return components.back(); }
};

/// Parses `path` as found in an archive or metadata: a leading "./" is dropped, "." components
/// are skipped; absolute paths, ".." components, NUL bytes and the empty path give nullopt.
[[nodiscard]] std::optional<RelPath> parse_rel_path(std::string_view path);

/// The directory holding `path` below `root_fd`, opened (O_PATH) without following symlinks.
/// With `create`, missing directories are made (0755). Throws core::Error(invalid_input) naming
/// `path` and `what` when a component is a symlink or not a directory, other categories for I/O.
[[nodiscard]] core::UniqueFd open_parent(int root_fd, const RelPath& path, bool create, std::string_view what);

/// open_parent/open_dir for many paths below one root: keeps the chain of directories of the last
/// path open and walks only from where the next path differs, so the files of one folder (the
/// usual order in a package) cost no extra openat. Same refusals as open_parent, unless symlinks
/// may be followed (see the constructor). Directories on the chain must not be replaced while
/// the walker lives (nothing here removes directories).
class DirWalker {
public:
    /// Never follows symlinks.
    explicit DirWalker(int root_fd) : root_fd_(root_fd) {}
    /// Follows symlinks that stay inside the root, as conda would when one package's folder is
    /// another's symlink (`lib64 -> lib`): relative targets, and absolute ones under
    /// `absolute_root` (the root's path in the image, "/opt/conda"). A target that leaves the
    /// root, by ".." or elsewhere, is refused.
    DirWalker(int root_fd, std::string absolute_root)
        : root_fd_(root_fd), follow_(true), absolute_root_(std::move(absolute_root)) {}

    /// The directory holding `path`; the fd stays valid until the next call.
    [[nodiscard]] int parent(const RelPath& path, bool create, std::string_view what);
    /// The directory `path` itself.
    [[nodiscard]] int dir(const RelPath& path, bool create, std::string_view what);

private:
    int walk_to(const RelPath& path, std::size_t count, bool create, std::string_view what);
    /// The directory components[0..count) resolve to, following symlinks inside the root.
    core::UniqueFd resolve(const RelPath& path, std::size_t count, bool create, std::string_view what) const;
    int root_fd_;
    bool follow_ = false;
    std::string absolute_root_;
    std::vector<std::string> names_;   // the requested components of the open chain
    std::vector<core::UniqueFd> fds_;  // fds_[i]: where names_[0..i] resolve to
};

/// Opens `dir` (a path, absolute or relative to the cwd) as the root of such walks.
[[nodiscard]] core::UniqueFd open_root(const std::string& dir);

/// The directory `path` below `root_fd` (O_PATH), made first with `create`.
[[nodiscard]] core::UniqueFd open_dir(int root_fd, const RelPath& path, bool create, std::string_view what);

/// Makes every component of `path` a directory below `root_fd` (no symlinks followed).
void make_dirs(int root_fd, const RelPath& path, std::string_view what);

/// lstat of `name` in `dir_fd`; nullopt when it does not exist.
[[nodiscard]] std::optional<struct stat> stat_at(int dir_fd, const std::string& name);

/// Removes the file or symlink at `name` in `dir_fd` so that a new entry can take its place;
/// nothing when absent. A directory there is not replaced: core::Error(invalid_input) naming `what`.
void remove_at(int dir_fd, const std::string& name, std::string_view what);

/// Writes `content` as a new file `path` below `root_fd` (parents made, an old file replaced).
void write_new_file(int root_fd, const RelPath& path, std::string_view content, mode_t mode, std::string_view what);

/// The target of the symlink `name` in `dir_fd`.
[[nodiscard]] std::string read_link_at(int dir_fd, const std::string& name, std::string_view what);

}  // namespace ocibuild::conda::detail
