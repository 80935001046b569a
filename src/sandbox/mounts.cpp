// The sandbox's mounts. See mounts.hpp for why everything goes through file descriptors.
#include "mounts.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace ocibuild::sandbox::mounts {

namespace {

using core::ErrorCategory;
using core::UniqueFd;

constexpr std::uint64_t no_suid_dev_exec = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

struct FsOption {
    const char* key;
    const char* value;  // nullptr: a flag
};

// A new detached filesystem mount (fsopen → fsconfig → fsmount); -1 with errno set.
int make_fs(const char* type, std::initializer_list<FsOption> options, std::uint64_t attrs) {
    UniqueFd fs(::fsopen(type, FSOPEN_CLOEXEC));
    if (!fs) return -1;
    for (const auto& o : options) {
        int rc = o.value ? ::fsconfig(fs.get(), FSCONFIG_SET_STRING, o.key, o.value, 0)
                         : ::fsconfig(fs.get(), FSCONFIG_SET_FLAG, o.key, nullptr, 0);
        if (rc != 0) return -1;
    }
    if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) return -1;
    return ::fsmount(fs.get(), FSMOUNT_CLOEXEC, static_cast<unsigned>(attrs));
}

// A detached copy of the mount (tree) at `fd`, with `attrs` set on all of it; -1 with errno set.
int clone_tree(int fd, bool recursive, std::uint64_t attrs) {
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
    UniqueFd tree(::open_tree(fd, "", flags));
    if (!tree) return -1;
    mount_attr attr{};
    attr.attr_set = attrs;
    if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0)
        return -1;
    return tree.release();
}

// Attaches the detached mount `mnt` on the file or folder `target`.
int attach(int mnt, int target) {
    return ::move_mount(mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

UniqueFd open_host(const Channel& ch, const std::string& path, const char* what, bool optional) {
    int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0 && !(optional && errno == ENOENT)) ch.die_errno("cannot open %s %s", what, path.c_str());
    return UniqueFd(fd);
}

// mkdir -p of `rel` under the folder `dir`, then the last component as a folder or an empty file.
void make_path(const Channel& ch, int dir, const std::string& rel, bool directory) {
    UniqueFd cur(::fcntl(dir, F_DUPFD_CLOEXEC, 3));
    std::size_t i = 0;
    for (;;) {
        auto j = rel.find('/', i);
        std::string part = rel.substr(i, j == std::string::npos ? std::string::npos : j - i);
        bool last = j == std::string::npos;
        if (last && !directory) {
            int fd = ::openat(cur.get(), part.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd < 0) ch.die_errno("cannot create the mount point /%s", rel.c_str());
            ::close(fd);
            return;
        }
        if (::mkdirat(cur.get(), part.c_str(), 0755) != 0 && errno != EEXIST)
            ch.die_errno("cannot create the mount point /%s", rel.c_str());
        int next = ::openat(cur.get(), part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) ch.die_errno("cannot create the mount point /%s", rel.c_str());
        cur.reset(next);
        if (last) return;
        i = j + 1;
    }
}

UniqueFd target_in_root(const Channel& ch, int root_fd, const std::string& rel) {
    int fd = open_in_root(root_fd, rel);
    if (fd < 0) ch.die_errno("cannot open the mount point /%s in the root filesystem", rel.c_str());
    return UniqueFd(fd);
}

}  // namespace

HostFds open_host_fds(const Channel& ch, const Plan& plan) {
    HostFds host;
    if (plan.overlay) {
        for (const auto& l : plan.lowerdirs) host.lowers.push_back(open_host(ch, l, "lowerdir", false));
        host.upper = open_host(ch, plan.upperdir, "upperdir", false);
        host.work = open_host(ch, plan.workdir, "workdir", false);
    } else {
        host.rootfs = open_host(ch, plan.rootfs, "rootfs", false);
    }
    for (const auto& b : plan.binds) host.binds.push_back(open_host(ch, b.source, "bind source", b.optional));
    host.sys = UniqueFd(::open("/sys", O_PATH | O_DIRECTORY | O_CLOEXEC));  // optional: see mount_sys
    for (const char* name : dev_node_names)
        host.dev_nodes.emplace_back(::open((std::string("/dev/") + name).c_str(), O_PATH | O_CLOEXEC));
    return host;
}

int open_in_root(int root_fd, const std::string& rel, int flags) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    const char* path = rel.empty() ? "." : rel.c_str();
    for (int tries = 0;; ++tries) {
        long fd = ::syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        // EAGAIN: a concurrent rename raced the in-root resolution; the kernel asks us to retry.
        if (fd >= 0 || errno != EAGAIN || tries == 32) return static_cast<int>(fd);
    }
}

std::string mount_scratch(const Channel& ch) {
    for (const char* dir : {"/tmp", "/run", "/mnt", "/var/tmp"}) {
        struct stat st {};
        if (::stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (::mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0)
            ch.die_errno("cannot mount the sandbox's scratch tmpfs on %s", dir);
        return dir;
    }
    ch.die(ErrorCategory::unsupported, 0, "no /tmp, /run, /mnt or /var/tmp to build the sandbox's root in");
}

void make_stub_layer(const Channel& ch, const std::string& dir, const Plan& plan) {
    if (::mkdir(dir.c_str(), 0755) != 0) ch.die_errno("cannot create %s", dir.c_str());
    UniqueFd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) ch.die_errno("cannot open %s", dir.c_str());
    for (const auto& mp : plan.mount_points) make_path(ch, fd.get(), mp.path, mp.directory);
}

UniqueFd mount_root(const Channel& ch, const Plan& plan, const HostFds& host, const std::string& stub_layer,
                    const std::string& target) {
    if (::mkdir(target.c_str(), 0755) != 0) ch.die_errno("cannot create %s", target.c_str());
    if (plan.overlay) {
        // The layers by descriptor: short options whatever the paths (the kernel takes one page
        // of them), nothing to escape, and the folders under the scratch tmpfs stay reachable.
        auto fd_path = [](const UniqueFd& fd) { return "/proc/self/fd/" + std::to_string(fd.get()); };
        std::vector<std::string> lowers;
        for (const auto& l : host.lowers) lowers.push_back(fd_path(l));
        lowers.push_back(stub_layer);  // bottom-most: mount points exist without touching the upperdir
        auto options = overlay_options(lowers, fd_path(host.upper), fd_path(host.work), plan.userxattr);
        if (options.size() >= 4096)
            ch.die(ErrorCategory::unsupported, 0, "overlay unavailable: %zu layers exceed one mount's options",
                   host.lowers.size());
        if (::mount("overlay", target.c_str(), "overlay", MS_NODEV, options.c_str()) != 0) {
            int err = errno;
            ch.die(ErrorCategory::unsupported, 0,
                   "overlay unavailable: mounting the root filesystem (%zu layers, %s xattrs) failed: %s; "
                   "ocibuild falls back to copying",
                   host.lowers.size(), plan.userxattr ? "user.overlay" : "trusted.overlay", std::strerror(err));
        }
    } else {
        UniqueFd tree(clone_tree(host.rootfs.get(), true, MOUNT_ATTR_NODEV));
        UniqueFd at(::open(target.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!tree || !at || attach(tree.get(), at.get()) != 0)
            ch.die_errno("cannot bind the root filesystem %s", plan.rootfs.c_str());
    }
    // Opened after the mount, so the descriptor is the new root, not the folder under it.
    UniqueFd root(::open(target.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) ch.die_errno("cannot open the new root %s", target.c_str());
    return root;
}

void mount_proc(const Channel& ch, int root_fd, const HostFds& host) {
    auto at = target_in_root(ch, root_fd, "proc");
    UniqueFd proc(make_fs("proc", {}, no_suid_dev_exec));
    if (!proc || attach(proc.get(), at.get()) != 0) ch.die_errno("cannot mount /proc for the sandbox's pid namespace");

    // runc's readonlyPaths and maskedPaths. Without a user namespace (root) the command is the
    // host's uid 0, and /proc/sys/kernel/core_pattern alone would let it run a program as the
    // host's root; inside one they are already the host root's, and this costs nothing.
    for (const char* name : {"sys", "sysrq-trigger", "irq", "bus", "fs"}) {
        UniqueFd entry(::openat(proc.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!entry) continue;
        UniqueFd ro(clone_tree(entry.get(), true, MOUNT_ATTR_RDONLY | no_suid_dev_exec));
        if (!ro || attach(ro.get(), entry.get()) != 0) ch.die_errno("cannot make /proc/%s read-only", name);
    }
    for (const char* name : {"kcore", "keys", "timer_list", "sched_debug", "acpi", "scsi", "latency_stats"}) {
        UniqueFd entry(::openat(proc.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!entry || ::fstat(entry.get(), &st) != 0) continue;
        // Folders under an empty read-only tmpfs, files under the host's /dev/null.
        UniqueFd mask;
        if (S_ISDIR(st.st_mode)) mask.reset(make_fs("tmpfs", {{"size", "4k"}}, MOUNT_ATTR_RDONLY | no_suid_dev_exec));
        else if (host.dev_nodes[0]) mask.reset(clone_tree(host.dev_nodes[0].get(), false, MOUNT_ATTR_RDONLY));
        if (!mask || attach(mask.get(), entry.get()) != 0) ch.die_errno("cannot mask /proc/%s", name);
    }
}

void mount_dev(const Channel& ch, int root_fd, const HostFds& host, std::uint64_t shm_bytes) {
    auto at = target_in_root(ch, root_fd, "dev");
    UniqueFd dev(make_fs("tmpfs", {{"mode", "0755"}, {"size", "1m"}}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
    if (!dev || attach(dev.get(), at.get()) != 0) ch.die_errno("cannot mount a tmpfs on /dev");

    // The host's nodes, bound onto empty files: a user namespace cannot mknod, and binding keeps
    // them the very same devices. The dev tmpfs itself stays nodev; each bind is its own mount.
    const auto& names = dev_node_names;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (!host.dev_nodes[i]) continue;
        UniqueFd file(::openat(dev.get(), names[i], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666));
        UniqueFd node(clone_tree(host.dev_nodes[i].get(), false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
        if (!file || !node || attach(node.get(), file.get()) != 0) ch.die_errno("cannot bind /dev/%s", names[i]);
    }

    // A private devpts instance: ptys opened inside never show up in the host's /dev/pts.
    if (::mkdirat(dev.get(), "pts", 0755) != 0) ch.die_errno("cannot create /dev/pts");
    UniqueFd pts_at(::openat(dev.get(), "pts", O_PATH | O_DIRECTORY | O_CLOEXEC));
    UniqueFd pts(make_fs("devpts", {{"newinstance", nullptr}, {"ptmxmode", "0666"}, {"mode", "0620"}},
                         MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
    if (!pts_at || !pts || attach(pts.get(), pts_at.get()) != 0) ch.die_errno("cannot mount /dev/pts");

    if (::mkdirat(dev.get(), "shm", 01777) != 0) ch.die_errno("cannot create /dev/shm");
    UniqueFd shm_at(::openat(dev.get(), "shm", O_PATH | O_DIRECTORY | O_CLOEXEC));
    auto size = std::to_string(shm_bytes);
    UniqueFd shm = shm_bytes ? UniqueFd(make_fs("tmpfs", {{"mode", "1777"}, {"size", size.c_str()}}, no_suid_dev_exec))
                             : UniqueFd(make_fs("tmpfs", {{"mode", "1777"}}, no_suid_dev_exec));
    if (!shm_at || !shm || attach(shm.get(), shm_at.get()) != 0) ch.die_errno("cannot mount /dev/shm");

    const std::pair<const char*, const char*> links[] = {
        {"ptmx", "pts/ptmx"},          {"fd", "/proc/self/fd"},         {"stdin", "/proc/self/fd/0"},
        {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}, {"core", "/proc/kcore"},
    };
    for (const auto& [name, to] : links)
        if (::symlinkat(to, dev.get(), name) != 0) ch.die_errno("cannot create /dev/%s", name);
}

void mount_sys(const Channel& ch, int root_fd, const HostFds& host) {
    // A new sysfs needs a network namespace of our own, so with the host's network it cannot be
    // had; the host's, read-only, is what bubblewrap and buildah's chroot isolation give too, and
    // lets tools read CPU topology and cgroup limits.
    auto at = target_in_root(ch, root_fd, "sys");
    if (host.sys) {
        UniqueFd sys(clone_tree(host.sys.get(), true, MOUNT_ATTR_RDONLY | no_suid_dev_exec));
        if (sys && attach(sys.get(), at.get()) == 0) return;
    }
    UniqueFd empty(make_fs("tmpfs", {{"mode", "0555"}, {"size", "4k"}}, MOUNT_ATTR_RDONLY | no_suid_dev_exec));
    if (!empty || attach(empty.get(), at.get()) != 0) ch.die_errno("cannot mount /sys");
}

void mount_binds(const Channel& ch, int root_fd, const Plan& plan, const HostFds& host) {
    for (std::size_t i = 0; i < plan.binds.size(); ++i) {
        const auto& b = plan.binds[i];
        if (!host.binds[i]) continue;
        int fd = open_in_root(root_fd, b.target);
        // An image whose /etc/resolv.conf is a dangling symlink keeps it: nothing to bind onto.
        if (fd < 0 && b.optional && errno == ENOENT) continue;
        if (fd < 0) ch.die_errno("cannot open the bind target /%s in the root filesystem", b.target.c_str());
        UniqueFd at(fd);
        std::uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (b.read_only ? MOUNT_ATTR_RDONLY : 0);
        UniqueFd tree(clone_tree(host.binds[i].get(), true, attrs));
        if (!tree || attach(tree.get(), at.get()) != 0)
            ch.die_errno("cannot bind %s onto /%s", b.source.c_str(), b.target.c_str());
    }
}

void pivot_into(const Channel& ch, int root_fd) {
    if (::fchdir(root_fd) != 0) ch.die_errno("cannot enter the new root");
    // pivot_root(".", "."): the old root ends up stacked on top of the new one at "/", and the
    // lazy unmount detaches it with every host mount under it. No put_old folder is needed, so
    // nothing is created in the image.
    if (::syscall(SYS_pivot_root, ".", ".") != 0) ch.die_errno("pivot_root into the new root failed");
    if (::umount2(".", MNT_DETACH) != 0) ch.die_errno("cannot detach the old root");
    if (::chdir("/") != 0) ch.die_errno("chdir / in the new root");
}

}  // namespace ocibuild::sandbox::mounts
