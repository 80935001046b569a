// Mount-point stubs in a plain rootfs, created before a run and removed after it.
#include "stubs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "mounts.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::sandbox {

namespace {

std::string parent_of(const std::string& rel) {
    auto slash = rel.rfind('/');
    return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string name_of(const std::string& rel) {
    auto slash = rel.rfind('/');
    return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

}  // namespace

RootfsStubs::RootfsStubs(const std::filesystem::path& rootfs, const std::vector<MountPoint>& points)
    : root_(core::open_file(rootfs, O_PATH | O_DIRECTORY)) {
    try {
        for (const auto& p : points) create(p);
    } catch (...) {
        remove();  // undo what was made before the failure
        throw;
    }
}

void RootfsStubs::create(const MountPoint& point) {
    // Walk the prefixes: each one that exists is left alone; from the first missing one down,
    // each is made in its (resolved) parent.
    for (std::size_t end = 0; end != std::string::npos;) {
        end = point.path.find('/', end + 1);
        std::string prefix = point.path.substr(0, end);
        bool last = end == std::string::npos;
        core::UniqueFd existing(mounts::open_in_root(root_.get(), prefix));
        if (existing) continue;
        if (errno != ENOENT) core::throw_errno("cannot resolve /" + prefix + " in the root filesystem");

        core::UniqueFd parent(mounts::open_in_root(root_.get(), parent_of(prefix), O_PATH | O_DIRECTORY));
        if (!parent) core::throw_errno("cannot resolve /" + parent_of(prefix) + " in the root filesystem");
        struct stat st {};
        if (::fstatat(parent.get(), "", &st, AT_EMPTY_PATH) != 0) core::throw_errno("stat /" + parent_of(prefix));
        auto name = name_of(prefix);
        int rc = (last && !point.directory)
                     ? ::openat(parent.get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644)
                     : ::mkdirat(parent.get(), name.c_str(), 0755);
        if (rc < 0) {
            // A dangling symlink where resolv.conf or hosts should be: the image keeps it as is.
            if (errno == EEXIST && point.optional) return;
            core::throw_errno("cannot create the mount point /" + prefix + " in the root filesystem");
        }
        if (last && !point.directory) ::close(rc);
        bool known = std::any_of(parents_.begin(), parents_.end(),
                                 [&](const Parent& p) { return p.path == parent_of(prefix); });
        if (!known) parents_.push_back({parent_of(prefix), st.st_mtim});
        created_.push_back(prefix);
    }
}

RootfsStubs::~RootfsStubs() { remove(); }

void RootfsStubs::remove() noexcept {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
        core::UniqueFd parent(mounts::open_in_root(root_.get(), parent_of(*it), O_PATH | O_DIRECTORY));
        struct stat st {};
        auto name = name_of(*it);
        if (!parent || ::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISDIR(st.st_mode)) (void)::unlinkat(parent.get(), name.c_str(), AT_REMOVEDIR);  // fails when filled
        else if (S_ISREG(st.st_mode) && st.st_size == 0) (void)::unlinkat(parent.get(), name.c_str(), 0);
    }
    created_.clear();
    for (auto it = parents_.rbegin(); it != parents_.rend(); ++it) {
        core::UniqueFd dir(mounts::open_in_root(root_.get(), it->path, O_RDONLY | O_DIRECTORY));
        const timespec times[2] = {{0, UTIME_OMIT}, it->mtime};
        if (dir) (void)::futimens(dir.get(), times);
    }
    parents_.clear();
}

}  // namespace ocibuild::sandbox
