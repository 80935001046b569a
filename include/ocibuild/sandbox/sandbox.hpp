#pragma once
// A rootless sandbox for one build step, on Linux namespaces only (no setuid helper of ours, no
// daemon). The lifecycle, top to bottom, as bubblewrap does it:
//
//   auto ids = sandbox::detect_id_maps(...);      // full subordinate range via newuidmap, or 1:1
//   sandbox::RunSpec spec{...};                   // rootfs (overlay lowerdirs + upper, or a dir),
//                                                 // argv, env, user, mounts, network
//   auto result = sandbox::run(spec, ids);        // clone(user|mnt|pid|ipc|uts[|net]) → id maps →
//                                                 // overlay + /proc + /dev + binds → pivot_root →
//                                                 // drop caps, no_new_privs → exec; wait; reap
//
// Nothing survives the step: the mount namespace dies with its last process, the command's process
// group is killed on timeout or cancellation, and the child dies with the parent (PR_SET_PDEATHSIG).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
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
    /// True when more than one id is mapped (chown to other ids works inside).
    [[nodiscard]] bool full() const;
    /// Host id of a sandbox id, and back; nullopt when unmapped.
    [[nodiscard]] std::optional<std::uint32_t> to_host_uid(std::uint32_t inside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_host_gid(std::uint32_t inside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_sandbox_uid(std::uint32_t outside) const;
    [[nodiscard]] std::optional<std::uint32_t> to_sandbox_gid(std::uint32_t outside) const;
};

/// The id maps a sandbox started by this process will get: as root, the identity map of all ids
/// (no user namespace remapping needed); as a user with ranges in /etc/subuid and /etc/subgid and
/// newuidmap/newgidmap installed, 0 → the caller plus 1..N → the subordinate range; otherwise the
/// single mapping 0 → the caller. `subuid_file`/`subgid_file` default to /etc/subuid, /etc/subgid.
[[nodiscard]] IdMaps detect_id_maps(const std::filesystem::path& subuid_file = "/etc/subuid",
                                    const std::filesystem::path& subgid_file = "/etc/subgid");

struct BindMount {
    std::filesystem::path source;  // on the host
    std::string target;            // absolute path in the sandbox; created when missing
    bool read_only = true;
};

struct RunSpec {
    /// The root filesystem: an overlay of `lowerdirs` (top-most first) with `upperdir`/`workdir`
    /// collecting the changes ...
    std::vector<std::filesystem::path> lowerdirs;
    std::filesystem::path upperdir;
    std::filesystem::path workdir;
    /// ... or, when `lowerdirs` is empty, this directory used as is (the copy fallback).
    std::filesystem::path rootfs;

    std::vector<std::string> argv;  // argv[0] looked up in the sandbox's PATH when not absolute
    std::vector<std::string> env;   // "KEY=value"
    std::string cwd = "/";          // created when missing
    std::string user;               // "uid[:gid]" or a name from the rootfs /etc/passwd (and group)
    std::string hostname = "ocibuild";
    bool network = true;            // false: a new network namespace with only loopback
    std::uint64_t shm_bytes = 64ull << 20;
    std::vector<BindMount> binds;   // build-time mounts (caches, recipe files): never in the layer
    std::chrono::seconds timeout{0};  // 0 = none
    int stdin_fd = -1;              // -1 = /dev/null
    int stdout_fd = 1;
    int stderr_fd = 2;
};

struct RunResult {
    int exit_code = 0;     // the command's exit status, or 128 + signal
    int signal = 0;        // the signal that ended it, 0 if it exited
    bool timed_out = false;
    bool cancelled = false;
};

/// Runs the step. Throws core::Error naming what failed to set up (unsupported when user
/// namespaces or overlay are unavailable, with what to do about it); the command's own failure is
/// a RunResult, not an exception. `cancel`, when set by another thread (Ctrl-C), kills the step.
[[nodiscard]] RunResult run(const RunSpec& spec, const IdMaps& ids, const std::atomic<bool>* cancel = nullptr);

/// Whether an unprivileged overlay mount works here (tries one in a throwaway user namespace).
[[nodiscard]] bool overlay_available();

}  // namespace ocibuild::sandbox
