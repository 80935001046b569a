#pragma once
// Mount points for a plain-folder rootfs (the copy fallback), where there is no stub layer to
// hide them under: created for one run, removed after it, as buildah does with its stubs. The
// generic diff then sees the tree as the step left it.
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "ocibuild/core/fd.hpp"
#include "plan.hpp"

namespace ocibuild::sandbox {

class RootfsStubs {
public:
    /// Creates each of `points` missing in `rootfs` (resolved inside it: an image's symlink cannot
    /// send a stub outside), with its missing parents. Throws core::Error when one cannot be made
    /// (an optional one, such as a dangling /etc/resolv.conf, is skipped instead).
    RootfsStubs(const std::filesystem::path& rootfs, const std::vector<MountPoint>& points);
    /// Removes what it created, deepest first, where still an empty folder or an empty file (a
    /// folder the step filled stays: it is the step's change), and puts back the modification
    /// time of the folders they were created in. Never throws.
    ~RootfsStubs();
    RootfsStubs(const RootfsStubs&) = delete;
    RootfsStubs& operator=(const RootfsStubs&) = delete;

    /// What was created, relative to the rootfs, in creation order.
    [[nodiscard]] const std::vector<std::string>& created() const noexcept { return created_; }

private:
    void create(const MountPoint& point);
    void remove() noexcept;

    core::UniqueFd root_;
    std::vector<std::string> created_;
    struct Parent {
        std::string path;
        timespec mtime;
    };
    std::vector<Parent> parents_;
};

}  // namespace ocibuild::sandbox
