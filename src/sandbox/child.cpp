// The sandbox's processes, top to bottom. See child.hpp for the picture.
#include "child.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mounts.hpp"
#include "privileges.hpp"
#include "user.hpp"

namespace ocibuild::sandbox::child {

namespace {

using core::ErrorCategory;

// --- small steps ------------------------------------------------------------------------------

// ocibuild may ignore SIGPIPE or block signals; both would survive exec into the command.
void reset_signals() {
    for (int sig = 1; sig < NSIG; ++sig) (void)::signal(sig, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void loopback_up(const Channel& ch) {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) ch.die_errno("cannot read the flags of lo");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) ch.die_errno("cannot bring lo up");
    ::close(s);
}

// mkdir -p inside the new root (we are past pivot_root, so "/" is the image's root).
void make_cwd(const Channel& ch, const std::string& cwd) {
    for (std::size_t i = 1; i <= cwd.size(); ++i) {
        if (i != cwd.size() && cwd[i] != '/') continue;
        std::string prefix = cwd.substr(0, i);
        if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
            ch.die_errno("cannot create the working directory %s", prefix.c_str());
    }
}

std::string read_image_file(const char* path) {
    std::string text;
    // Non-blocking and regular files only: an image's FIFO must not hang the step.
    int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st {};
    if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        ::close(fd);
        fd = -1;
    }
    if (fd < 0) return text;  // no passwd or group: numeric users still work
    char buf[8192];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < (8u << 20);)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return text;
}

user::Credentials resolve_user(const Channel& ch, const std::string& spec) {
    auto creds = user::resolve(spec, read_image_file("/etc/passwd"), read_image_file("/etc/group"));
    if (!creds) ch.die(ErrorCategory::invalid_input, 0, "the step's user: %s", creds.error().c_str());
    return *creds;
}

// The step's descriptors onto 0, 1, 2: first duplicated above 2, so that any permutation works.
void set_stdio(const Channel& ch, const Plan& plan) {
    int in = plan.stdin_fd >= 0 ? ::fcntl(plan.stdin_fd, F_DUPFD_CLOEXEC, 3)
                                : ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = ::fcntl(plan.stdout_fd, F_DUPFD_CLOEXEC, 3);
    int err = ::fcntl(plan.stderr_fd, F_DUPFD_CLOEXEC, 3);
    if (in < 0 || out < 0 || err < 0) ch.die_errno("cannot set up the command's stdin/stdout/stderr");
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ch.die_errno("cannot set up stdio");
}

[[noreturn]] void exec_command(const Plan& plan, const std::string& home) {
    std::vector<char*> argv, envp;
    for (const auto& a : plan.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    bool has_home = false;
    for (const auto& e : plan.env) {
        envp.push_back(const_cast<char*>(e.c_str()));
        has_home = has_home || e.compare(0, 5, "HOME=") == 0;
    }
    std::string home_var = "HOME=" + home;  // as docker and buildah do, from the user's passwd entry
    if (!has_home) envp.push_back(home_var.data());
    envp.push_back(nullptr);

    // execvp's search, on the sandbox's PATH (glibc's execvpe would search ocibuild's own).
    int failure = ENOENT;
    for (const auto& candidate : plan.exec_candidates) {
        ::execve(candidate.c_str(), argv.data(), envp.data());
        if (errno == EACCES || errno == ENOEXEC) failure = errno;  // remembered; later folders may work
        else if (errno != ENOENT && errno != ENOTDIR) {
            failure = errno;
            break;
        }
    }
    // Like a shell: 127 when there is no such command, 126 when it cannot be run.
    char msg[512];
    int n = failure == ENOENT
                ? std::snprintf(msg, sizeof msg, "ocibuild: %s: command not found\n", plan.argv[0].c_str())
                : std::snprintf(msg, sizeof msg, "ocibuild: %s: %s\n", plan.argv[0].c_str(), std::strerror(failure));
    if (n > 0) (void)!::write(2, msg, static_cast<std::size_t>(n) < sizeof msg ? n : sizeof msg - 1);
    ::_exit(failure == ENOENT ? 127 : 126);
}

// --- the three processes ----------------------------------------------------------------------

[[noreturn]] void command_main(const Plan& plan, const Channel& ch, const user::Credentials& creds) {
    set_stdio(ch, plan);
    // No descriptor of ocibuild reaches the command; the channel stays usable until exec.
    if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) ch.die_errno("close_range");
    privileges::become(ch, creds, plan.can_setgroups, plan.id_writer == idmap::Writer::self_single);
    // After becoming the user, so a folder it may not enter fails as it would in docker.
    if (::chdir(plan.cwd.c_str()) != 0) ch.die_errno("cannot enter the working directory %s", plan.cwd.c_str());
    ::umask(022);
    exec_command(plan, creds.home);
}

[[noreturn]] void init_main(const Plan& plan, const Channel& ch, int parent_alive) {
    // Die with sandbox_main; if it is already gone (its end of the pipe closed), so are we.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    pollfd alive{parent_alive, POLLIN, 0};
    if (::poll(&alive, 1, 0) != 0) ::_exit(125);
    ::umask(0);  // the modes below are meant as written

    // Host paths first, while they are all visible: in this mount namespace (bind and overlay
    // refuse another's mounts) and before the scratch tmpfs covers /tmp.
    auto host = mounts::open_host_fds(ch, plan);
    auto scratch = mounts::mount_scratch(ch);

    // The new root, then everything in it, while the host's /proc is still mounted (the kernel
    // refuses a new proc in a user namespace that sees no full one). Mount points missing in the
    // image come from a stub layer under the overlay, so the upperdir never sees them.
    auto stubs = scratch + "/stubs";
    if (plan.overlay) mounts::make_stub_layer(ch, stubs, plan);
    auto root = mounts::mount_root(ch, plan, host, stubs, scratch + "/root");
    mounts::mount_proc(ch, root.get(), host);
    mounts::mount_dev(ch, root.get(), host, plan.shm_bytes);
    mounts::mount_sys(ch, root.get(), host);
    mounts::mount_binds(ch, root.get(), plan, host);

    // Into it; the old root and every host mount leave our view.
    mounts::pivot_into(ch, root.get());
    host = {};
    root.reset();

    // Namespace-wide settings, which need root in the namespace: the command will lack them.
    if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) ch.die_errno("sethostname");
    if (plan.new_netns) loopback_up(ch);
    make_cwd(ch, plan.cwd);  // as root, through the overlay: a real change of the step, as in docker
    auto creds = resolve_user(ch, plan.user);  // the image's passwd, read from inside it

    pid_t command = ::fork();
    if (command < 0) ch.die_errno("cannot fork the command");
    if (command == 0) command_main(plan, ch, creds);

    // As init we only reap; the command cannot ptrace us or borrow our capabilities.
    privileges::drop_all(ch);
    ::prctl(PR_SET_DUMPABLE, 0);
    int status = 0;
    for (;;) {
        int st = 0;
        pid_t pid = ::waitpid(-1, &st, 0);
        if (pid == command) {
            status = st;
            break;
        }
        if (pid < 0 && errno != EINTR) break;  // cannot happen: the command is our child
    }
    Report done;
    done.kind = Report::Kind::exited;
    done.wait_status = status;
    (void)ch.send(done);
    // Exiting as pid 1 makes the kernel kill whatever the command left running.
    ::_exit(0);
}

}  // namespace

void sandbox_main(const Plan& plan, const Channel& ch, pid_t parent) noexcept {
    // Die with the thread that called run(); a parent gone before this line shows in getppid().
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);
    reset_signals();
    // A new session: no controlling terminal, so Ctrl-C reaches ocibuild alone (which cancels
    // the step) and the command cannot push input into the user's terminal (TIOCSTI).
    ::setsid();

    // The user namespace alone and first, so that it owns the others: root in it may then mount,
    // set the hostname and bring up lo. Its maps come from the parent (newuidmap needs a process
    // outside); we wait for them before unsharing the rest.
    if (plan.id_writer != idmap::Writer::none) {
        if (::unshare(CLONE_NEWUSER) != 0) {
            int err = errno;
            ch.die(ErrorCategory::unsupported, err,
                   "cannot create a user namespace (are unprivileged user namespaces disabled? see "
                   "/proc/sys/user/max_user_namespaces, kernel.unprivileged_userns_clone, AppArmor's "
                   "restrict_unprivileged_userns)");
        }
        Report ask;
        ask.kind = Report::Kind::need_maps;
        Report answer;
        if (!ch.send(ask) || !ch.receive(answer) || answer.kind != Report::Kind::maps_done) ::_exit(125);
        // Become the namespace's root. We already are when 0 maps to the caller; not when root
        // maps 0 elsewhere, and then our host ids are unmapped inside (no file could be created).
        if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
            ch.die_errno("cannot become root in the user namespace");
        if (plan.can_setgroups) (void)::setgroups(0, nullptr);  // the caller's groups mean nothing inside
        // A change of euid clears the parent-death signal.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(125);
    }

    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (plan.new_netns ? CLONE_NEWNET : 0);
    if (::unshare(flags) != 0) ch.die_errno("cannot create the sandbox's mount, pid, ipc, uts or network namespace");
    // Before any mount: nothing mounted from here on may propagate back to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ch.die_errno("cannot make mounts private");

    // unshare(CLONE_NEWPID) moves only our children into the new pid namespace: fork its pid 1.
    int alive[2];
    if (::pipe2(alive, O_CLOEXEC) != 0) ch.die_errno("pipe");
    pid_t init = ::fork();
    if (init < 0) ch.die_errno("cannot fork the sandbox's init");
    if (init == 0) {
        ::close(alive[1]);
        init_main(plan, ch, alive[0]);
    }
    ::close(alive[0]);

    // The parent gets init's pidfd: it kills the whole sandbox through it and waits for the pid
    // namespace to be gone, without any risk of a recycled pid.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, init, 0));
    Report started;
    started.kind = Report::Kind::pid1;
    (void)ch.send(started, pidfd);
    if (pidfd >= 0) ::close(pidfd);

    int status = 0;
    while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(0);
}

}  // namespace ocibuild::sandbox::child
