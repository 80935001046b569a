#pragma once
// The step's `user` ("uid[:gid]", "name[:group]") resolved against the rootfs's /etc/passwd and
// /etc/group, the way runc and docker do it. Pure: the caller reads the files (inside the sandbox,
// after pivot_root, so an image's symlinks cannot point the read at the host).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/result.hpp"

namespace ocibuild::sandbox::user {

struct Credentials {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::vector<std::uint32_t> groups;  // supplementary, the primary gid first
    std::string home = "/";             // from passwd; "/" when the user has no entry
    bool operator==(const Credentials&) const = default;
};

/// Resolves `spec` ("" = root). A name must exist in `passwd` (or `group` for the group part); a
/// number need not (its gid is then 0, as in docker). Supplementary groups are the primary gid plus
/// every group of `group` listing the user by name. Fails with the reason ("user \"x\" not found
/// in /etc/passwd").
[[nodiscard]] Result<Credentials, std::string> resolve(std::string_view spec, std::string_view passwd,
                                                       std::string_view group);

}  // namespace ocibuild::sandbox::user
