#pragma once
// Decide, then act (bubblewrap's SetupOp list): run() turns a RunSpec into this Plan in the parent,
// where errors are exceptions and the host can be inspected; the sandbox's processes only carry it
// out. Everything here is plain data the children read after fork.
#include <cstdint>
#include <string>
#include <vector>

#include "idmap.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

namespace ocibuild::sandbox {

/// A place in the rootfs something is mounted on; it must exist there before the mount.
struct MountPoint {
    std::string path;  // relative to the rootfs ("proc", "etc/hosts", "var/cache/apt")
    bool directory = true;
    bool optional = false;  // resolv.conf and hosts: left alone when the image's path dangles
};

/// A host file or folder bound into the sandbox.
struct PlannedBind {
    std::string source;  // absolute host path
    std::string target;  // relative to the rootfs
    bool read_only = true;
    bool optional = false;  // resolv.conf and hosts: skipped when the rootfs's path dangles
};

struct Plan {
    idmap::Writer id_writer = idmap::Writer::none;
    bool can_setgroups = true;  // false once the parent wrote setgroups=deny
    bool new_netns = false;

    // The root filesystem: an overlay (lowerdirs top-most first) or a plain folder bound as is.
    bool overlay = false;
    bool userxattr = false;  // user.overlay.* xattrs (unprivileged) instead of trusted.overlay.*
    std::vector<std::string> lowerdirs;
    std::string upperdir, workdir, rootfs;

    std::vector<MountPoint> mount_points;  // what must exist in the rootfs: proc, dev, sys, binds
    std::vector<PlannedBind> binds;        // resolv.conf, hosts, then the spec's binds in order
    std::string hostname;
    std::uint64_t shm_bytes = 0;

    // The command.
    std::string cwd;                            // absolute, in the sandbox
    std::string user;                           // the spec's, resolved inside after pivot_root
    std::vector<std::string> argv, env;
    std::vector<std::string> exec_candidates;  // argv[0], or each $PATH folder / argv[0], in order
    int stdin_fd = -1, stdout_fd = 1, stderr_fd = 2;
};

/// The Plan for `spec` run with `ids`. Throws core::Error(invalid_input) for a malformed spec
/// (empty argv, relative or ".." paths, binds under /proc, /dev or /sys) and not_found for a
/// missing lowerdir, upperdir, workdir, rootfs or bind source.
[[nodiscard]] Plan make_plan(const RunSpec& spec, const IdMaps& ids);

/// The search list for argv[0]: itself when it contains '/', else each folder of the PATH in
/// `env` (or the OCI default PATH) joined with it; empty PATH entries mean the current folder.
[[nodiscard]] std::vector<std::string> exec_candidates(const std::string& argv0, const std::vector<std::string>& env);

/// The mount options for the overlay root: layers given as the paths in `lowers` (top-most
/// first), `upper`, `work`. Redirects, metacopy and the index stay off so the upperdir is a plain
/// diff that layer::diff_overlay_upper() reads as is; "volatile" skips fsync (a failed step is
/// thrown away, a finished one is read back from the page cache and stored durably by the store).
[[nodiscard]] std::string overlay_options(const std::vector<std::string>& lowers, const std::string& upper,
                                          const std::string& work, bool userxattr);

}  // namespace ocibuild::sandbox
