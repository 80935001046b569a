// Credentials and capabilities of the command, set with raw syscalls (no libcap).
#include "privileges.hpp"

#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace ocibuild::sandbox::privileges {

namespace {

struct CapSets {
    std::uint64_t effective = 0, permitted = 0, inheritable = 0;
};

int set_caps(const CapSets& sets) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    data[0].effective = static_cast<std::uint32_t>(sets.effective);
    data[1].effective = static_cast<std::uint32_t>(sets.effective >> 32);
    data[0].permitted = static_cast<std::uint32_t>(sets.permitted);
    data[1].permitted = static_cast<std::uint32_t>(sets.permitted >> 32);
    data[0].inheritable = static_cast<std::uint32_t>(sets.inheritable);
    data[1].inheritable = static_cast<std::uint32_t>(sets.inheritable >> 32);
    return static_cast<int>(::syscall(SYS_capset, &header, data));
}

bool kept(int cap) {
    return std::find(kept_capabilities.begin(), kept_capabilities.end(), cap) != kept_capabilities.end();
}

std::uint64_t kept_mask() {
    std::uint64_t mask = 0;
    for (int cap : kept_capabilities) mask |= std::uint64_t{1} << cap;
    return mask;
}

// Every capability the kernel knows that is not kept leaves the bounding set, so not even a
// file capability or a setuid binary can bring it back after exec.
void cut_bounding_set(const Channel& ch) {
    for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap)
        if (!kept(cap) && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            ch.die_errno("cannot drop capability %d from the bounding set", cap);
}

}  // namespace

void become(const Channel& ch, const user::Credentials& creds, bool can_setgroups, bool single_id) {
    // While we are still root with CAP_SETPCAP.
    cut_bounding_set(ch);

    // Groups first: setgroups and setgid need CAP_SETGID, which setuid to a non-root user drops.
    // Without setgroups (single-id namespace) the caller's own groups stay, shown as nogroup.
    if (can_setgroups && ::setgroups(creds.groups.size(), reinterpret_cast<const gid_t*>(creds.groups.data())) != 0)
        ch.die_errno("cannot set the supplementary groups of uid %u", creds.uid);
    if (::setresgid(creds.gid, creds.gid, creds.gid) != 0 || ::setresuid(creds.uid, creds.uid, creds.uid) != 0) {
        if (errno == EINVAL && single_id)
            ch.die(core::ErrorCategory::unsupported, 0,
                   "the step's user %u:%u does not exist in the sandbox: only root is mapped, since this user has no "
                   "subordinate ids (add ranges to /etc/subuid and /etc/subgid, and install newuidmap/newgidmap)",
                   creds.uid, creds.gid);
        ch.die_errno("cannot switch to the step's user %u:%u", creds.uid, creds.gid);
    }

    // Root keeps the default set; for another user setresuid already cleared the effective and
    // permitted sets (no SECBIT_KEEP_CAPS), and this clears the inheritable one.
    std::uint64_t caps = creds.uid == 0 ? kept_mask() : 0;
    if (set_caps({caps, caps, caps}) != 0) ch.die_errno("cannot set the command's capabilities");
    (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

    // Last: no setuid binary or file capability gains anything across exec from here on.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ch.die_errno("cannot set no_new_privs");
}

void drop_all(const Channel& ch) {
    if (set_caps({}) != 0) ch.die_errno("cannot drop the init's capabilities");
}

}  // namespace ocibuild::sandbox::privileges
