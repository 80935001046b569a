#pragma once
// The sandbox's own processes, each a straight sequence of steps:
//
//   run() ── fork ──► sandbox_main   outside the new pid namespace: unshare(user) → id maps from
//                     │              the parent → unshare(mnt|pid|ipc|uts[|net]) → fork
//                     └──► init_main   pid 1: root filesystem, /proc, /dev, /sys, binds →
//                          │           pivot_root → hostname, lo → fork → reap until the command ends
//                          └──► command_main   stdio, user, capabilities, no_new_privs → exec
//
// Every process dies with its parent (PR_SET_PDEATHSIG), and when init dies the kernel kills the
// whole pid namespace; the mount namespace, and with it every mount, dies with its last process.
#include <sys/types.h>

#include "channel.hpp"
#include "plan.hpp"

namespace ocibuild::sandbox::child {

/// The first process, forked by run() (`parent` is run()'s pid). Never returns.
[[noreturn]] void sandbox_main(const Plan& plan, const Channel& ch, pid_t parent) noexcept;

}  // namespace ocibuild::sandbox::child
