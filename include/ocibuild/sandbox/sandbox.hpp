#pragma once
// A rootless sandbox for one build step, on Linux namespaces only (no setuid helper of ours, no
// daemon). The lifecycle, top to bottom, as bubblewrap does it:
//
//   auto ids = sandbox::detect_id_maps();         // once per build: 0 → caller + subordinate ids
//   bool user_xattrs = sandbox::uses_user_namespace(ids);  // extract lowerdirs to match (below)
//   sandbox::run_in_user_namespace(ids, fn);      // rootless with subordinate ids: extract layers
//                                                 // and write step layers with real owners
//   bool overlay = sandbox::overlay_available(store_dir);  // once per build; else the copy fallback
//   sandbox::RunSpec spec{...};                   // rootfs (overlay lowerdirs + upper, or a dir),
//                                                 // argv, env, user, binds, network
//   auto result = sandbox::run(spec, ids, &cancel);  // fork → unshare(user) → id maps (parent) →
//                                                 // unshare(mnt|pid|ipc|uts[|net]) → fork pid 1 →
//                                                 // overlay + /proc + /dev + /sys + binds →
//                                                 // pivot_root → fork → user, caps, no_new_privs →
//                                                 // exec; the parent waits, kills on timeout/cancel
//
// Nothing survives the step: the command runs in a pid namespace whose init dies with the step
// (timeout, cancellation, or ocibuild itself SIGKILLed: PR_SET_PDEATHSIG), taking every process
// in it; all mounts live in the sandbox's mount namespace, which dies with its last process; the
// mount points it needs (/proc, /dev, /sys, /etc/hosts, /etc/resolv.conf, bind targets) never
// appear in the upperdir or, for a plain rootfs, are removed again.
//
// Needs Linux 5.12 (mount_setattr, openat2, pidfd), 5.11 for overlay in a user namespace. As root
// with the identity map there is no user namespace (the overlay uses trusted.overlay xattrs, the
// command is the host's uid 0 with podman's default capabilities); everyone else gets one.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ocibuild::sandbox {

struct IdMapping {
    std::uint32_t inside = 0;   // id in the sandbox
    std::uint32_t outside = 0;  // id on the host
    std::uint32_t count = 1;
    bool operator==(const IdMapping&) const = default;
};

struct IdMaps {
    std::vector<IdMapping> uids;
    std::vector<IdMapping> gids;
    /// True when more than one uid and more than one gid are mapped (chown to other ids works).
    [[nodiscard]] bool full() const;
    /// Host id of a sandbox id, and back; nullopt when unmapped.
    [[nodiscard]] std::optional<std::uint32_t> to_host_uid(std::uint32_t inside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_host_gid(std::uint32_t inside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_sandbox_uid(std::uint32_t outside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_sandbox_gid(std::uint32_t outside) const;
};

/// The id maps a sandbox started by this process will get: as root, the identity map of all ids
/// (no user namespace remapping needed); as a user with ranges in both /etc/subuid and
/// /etc/subgid (lines "name-or-uid:start:count", all of the user's taken in order) and setuid
/// newuidmap/newgidmap in /usr/bin, /bin, /usr/sbin, /sbin or /usr/local/{bin,sbin} (fixed
/// folders: the library reads no $PATH), 0 → the caller plus 1..N → the subordinate ranges;
/// otherwise the single mapping 0 → the caller. Never fails: unreadable files grant nothing.
[[nodiscard]] IdMaps detect_id_maps(const std::filesystem::path& subuid_file = "/etc/subuid",
                                    const std::filesystem::path& subgid_file = "/etc/subgid");

/// Runs `fn` as root of a new user namespace with `ids` (written as run() writes them: newuidmap
/// and newgidmap for subordinate ids) in a forked child, and returns what `fn` returned. This is
/// how trees owned by subordinate ids are written, read and removed: root there may chown to
/// every mapped id and reads and removes every file whose owner is mapped, while files it creates
/// belong to the caller on the host (0 maps to the caller). With the identity map (root) there is
/// no namespace and `fn` runs in this process.
/// Throws core::Error: what `fn` threw (category and rendered message, carried back over a
/// socket; other exceptions as internal), unsupported when user namespaces are disabled,
/// unauthorized when newuidmap refuses the map, internal when the child dies without a word.
/// `fn` runs in a child forked from a possibly multi-threaded process: it must not wait for
/// anything another thread of this process would provide (locks held at fork time, queues); it
/// may allocate, throw and start threads of its own. Its changes to this process's memory are
/// lost: pass results back in the returned string.
[[nodiscard]] std::string run_in_user_namespace(const IdMaps& ids, const std::function<std::string()>& fn);

/// A build-time mount (cache folder, recipe file). Never part of the layer: neither what is
/// written through it nor the mount point, which is made in a stub layer (or removed afterwards).
struct BindMount {
    std::filesystem::path source;  // on the host, a folder or a file; mounted recursively
    std::string target;            // absolute, no "..", not under /proc, /dev or /sys; created when
                                   // missing (symlinks in the image resolve inside the rootfs)
    bool read_only = true;         // always nosuid, nodev
};

struct RunSpec {
    /// The root filesystem: an overlay of `lowerdirs` (top-most first) with `upperdir` collecting
    /// the changes (a plain overlayfs upper: whiteouts are 0/0 character devices, opaque folders
    /// carry the xattr of uses_user_namespace()'s flavour; no redirects, no metacopy) ...
    /// Layers must be in overlay form with the same xattr flavour. At most about 200 layers.
    std::vector<std::filesystem::path> lowerdirs;
    std::filesystem::path upperdir;
    /// Overlay's scratch, on the upperdir's filesystem, one per concurrent run; run() clears what
    /// a previous run left in it.
    std::filesystem::path workdir;
    /// ... or, when `lowerdirs` is empty, this directory used as is (the copy fallback).
    std::filesystem::path rootfs;

    std::vector<std::string> argv;  // argv[0] looked up in env's PATH (else the OCI default) when it
                                    // has no '/'; not found: exit code 127 and a line on stderr
    std::vector<std::string> env;   // "KEY=value", exactly; HOME is added from passwd when missing
    std::string cwd = "/";          // created (as root, through the overlay: a change) when missing
    std::string user;               // "" (root), "uid[:gid]" or "name[:group]" from the rootfs's
                                    // /etc/passwd and /etc/group, read inside the sandbox
    std::string hostname = "ocibuild";
    bool network = true;            // false: a new network namespace with only loopback, up
    std::uint64_t shm_bytes = 64ull << 20;  // /dev/shm's size; 0 = tmpfs's default
    std::vector<BindMount> binds;   // build-time mounts (caches, recipe files): never in the layer
    std::chrono::seconds timeout{0};  // 0 = none
    int stdin_fd = -1;              // -1 = /dev/null
    int stdout_fd = 1;
    int stderr_fd = 2;
};

struct RunResult {
    int exit_code = 0;     // the command's exit status, or 128 + signal
    int signal = 0;        // the signal that ended it, 0 if it exited (SIGKILL on timeout/cancel)
    bool timed_out = false;
    bool cancelled = false;
};

/// Runs the step and returns once every process of it is gone. Throws core::Error naming what
/// failed to set up: invalid_input for a malformed spec or an unknown user, not_found for a
/// missing layer or bind source, unsupported when user namespaces are disabled, when the overlay
/// does not mount ("overlay unavailable ...; ocibuild falls back to copying") or when the user
/// needs ids the map lacks (with what to do about it). The command's own failure is a RunResult,
/// not an exception. `cancel`, when set by another thread (Ctrl-C), kills the step within ~50 ms.
/// Safe to call from several threads at once; the calling thread must live until it returns
/// (PR_SET_PDEATHSIG is tied to it).
[[nodiscard]] RunResult run(const RunSpec& spec, const IdMaps& ids, const std::atomic<bool>* cancel = nullptr);

/// Whether run() uses a user namespace with these maps: always, except as root with the identity
/// map. It decides the overlay's xattrs, and so how lowerdirs must be extracted
/// (layer::ApplyOptions::user_xattr_overlay = uses_user_namespace(ids)):
///   true:  mounted with "userxattr"; opaque folders carry user.overlay.opaque="y" (Linux 5.11+)
///   false: trusted.overlay.opaque="y" (root only can set or read trusted.* xattrs)
/// Whiteouts are character devices 0/0 in both (mknod of 0/0 needs no privilege since Linux 5.8).
[[nodiscard]] bool uses_user_namespace(const IdMaps& ids);

/// Whether run()'s overlay works with its upperdir and workdir on the filesystem of `dir` (pass
/// the store's folder: an upperdir on overlayfs, as in a container, or on NFS is refused while
/// /tmp may work). Probes by mounting one in a throwaway namespace, as run() would (a fork and a
/// mount, a few milliseconds); the answer does not change within a process, so keep it.
[[nodiscard]] bool overlay_available(const std::filesystem::path& dir = "/tmp");

}  // namespace ocibuild::sandbox
