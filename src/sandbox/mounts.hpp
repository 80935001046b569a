#pragma once
// The mounts of a sandbox, on the file-descriptor mount API (fsopen, open_tree, move_mount,
// mount_setattr: Linux 5.12): every target is a descriptor opened with openat2(RESOLVE_IN_ROOT)
// inside the new root, so no symlink in an image can send a mount outside it, and every bind
// source is a descriptor opened in the sandbox's own mount namespace before anything covered it.
//
// Child-side code: each function either succeeds or reports through the Channel and _exits.
#include <fcntl.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "channel.hpp"
#include "plan.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::sandbox::mounts {

/// The host things the sandbox needs, opened O_PATH right after unshare(CLONE_NEWNS): in the new
/// namespace (bind and overlay refuse mounts of another namespace) and before the scratch tmpfs
/// covers /tmp, where layers and binds may live.
struct HostFds {
    std::vector<core::UniqueFd> lowers;
    core::UniqueFd upper, work, rootfs, sys;
    std::vector<core::UniqueFd> binds;      // parallel to Plan::binds; empty fd = optional and absent
    std::vector<core::UniqueFd> dev_nodes;  // parallel to dev_node_names
};
[[nodiscard]] HostFds open_host_fds(const Channel& ch, const Plan& plan);

/// Bound from the host's /dev into the sandbox's (each skipped when the host lacks it).
inline constexpr std::array<const char*, 6> dev_node_names{"null", "zero", "full", "random", "urandom", "tty"};

/// Opens `rel` inside the tree at `root_fd` with `flags` (plus O_CLOEXEC), symlinks resolved as
/// if `root_fd` were "/" (openat2 RESOLVE_IN_ROOT). Returns -1 with errno set. Used on both sides.
[[nodiscard]] int open_in_root(int root_fd, const std::string& rel, int flags = O_PATH);

/// A private tmpfs over /tmp (or /run, /mnt, /var/tmp when there is no /tmp) to build the new root
/// in; returns its path. It lives only in the sandbox's mount namespace.
[[nodiscard]] std::string mount_scratch(const Channel& ch);

/// Creates the mount points of `plan` under `dir` (empty folders and files): the overlay's
/// bottom-most lowerdir, so they exist in the merged root without ever touching the upperdir.
void make_stub_layer(const Channel& ch, const std::string& dir, const Plan& plan);

/// The root filesystem at `target`: the overlay of the layers (plus `stub_layer` at the bottom),
/// or the plain rootfs bound there. Returns an O_PATH fd of the new root.
[[nodiscard]] core::UniqueFd mount_root(const Channel& ch, const Plan& plan, const HostFds& host,
                                        const std::string& stub_layer, const std::string& target);

/// /proc of the sandbox's pid namespace, with sys, sysrq-trigger, irq, bus and fs read-only and
/// kcore, keys, timer_list, ... masked (as runc does). Must run in its pid 1 while the host's /proc
/// is still visible (the kernel refuses a new proc in a user namespace that sees no full one).
void mount_proc(const Channel& ch, int root_fd, const HostFds& host);
/// A tmpfs /dev with the host's device nodes bound in, pts, shm (`shm_bytes`) and the std symlinks.
void mount_dev(const Channel& ch, int root_fd, const HostFds& host, std::uint64_t shm_bytes);
/// The host's /sys, read-only and recursive; an empty read-only tmpfs when that is refused.
void mount_sys(const Channel& ch, int root_fd, const HostFds& host);
/// resolv.conf, hosts and the spec's binds, in order.
void mount_binds(const Channel& ch, int root_fd, const Plan& plan, const HostFds& host);

/// Makes `root_fd` the root: pivot_root(".", ".") and a lazy unmount of the old root stacked on
/// top, which takes every host mount out of the sandbox's view.
void pivot_into(const Channel& ch, int root_fd);

}  // namespace ocibuild::sandbox::mounts
