#pragma once
// What the command runs as: the step's user, podman's default capabilities (none for a non-root
// user), no_new_privs. Child-side: failures report through the Channel and _exit.
#include <linux/capability.h>

#include <array>

#include "channel.hpp"
#include "user.hpp"

namespace ocibuild::sandbox::privileges {

/// podman's default set: enough for package managers (chown, setuid to their users, setcap),
/// none of mount, ptrace, module loading, raw network or device creation.
inline constexpr std::array<int, 11> kept_capabilities{
    CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL,      CAP_NET_BIND_SERVICE,
    CAP_SETFCAP, CAP_SETGID,      CAP_SETPCAP, CAP_SETUID, CAP_SYS_CHROOT,
};

/// Becomes `creds`: bounding set cut to kept_capabilities, groups (when the namespace allows
/// setgroups), gid, uid, then the kept capabilities for root or none for another user, no
/// ambient capabilities, and no_new_privs. `single_id` says the namespace maps only root, to
/// explain an unmapped uid.
void become(const Channel& ch, const user::Credentials& creds, bool can_setgroups, bool single_id);

/// Drops every capability of this process (the sandbox's init, once the command is started).
void drop_all(const Channel& ch);

}  // namespace ocibuild::sandbox::privileges
