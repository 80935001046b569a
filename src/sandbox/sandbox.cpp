// run(): plan, fork the sandbox, answer its requests, watch the clock and the cancel flag, reap.
// The sandbox's side is in child.cpp.
#include "ocibuild/sandbox/sandbox.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <system_error>

#include "channel.hpp"
#include "child.hpp"
#include "idmap.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "plan.hpp"
#include "stubs.hpp"

namespace ocibuild::sandbox {

namespace {

using core::ErrorCategory;
using core::UniqueFd;
using Clock = std::chrono::steady_clock;

// Overlay leaves workdir/work behind (mode 0, and with "volatile" a marker that refuses the next
// mount); clearing it makes a workdir reusable. Folders are opened up first so removal can list them.
void clear_overlay_workdir(const std::filesystem::path& workdir) {
    auto work = workdir / "work";
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::symlink_status(work, ec))) return;
    auto open_up = [](auto& self, const std::filesystem::path& dir) -> void {
        std::error_code e;
        std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, e);
        for (const auto& entry : std::filesystem::directory_iterator(dir, e))
            if (entry.is_directory(e) && !entry.is_symlink(e)) self(self, entry.path());
    };
    open_up(open_up, work);
    std::filesystem::remove_all(work, ec);
    if (ec)
        throw core::Error(ErrorCategory::unavailable, "cannot clear overlay's " + work.string() + ": " + ec.message());
}

// A pidfd for our fresh child; without one, the child is killed and reaped before throwing.
UniqueFd pidfd_of_child(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) return UniqueFd(fd);
    int err = errno;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    core::throw_errno(err, "pidfd_open (Linux 5.3 or later is needed)");
}

// Watches one sandbox from fork to reaping. Its destructor kills and reaps whatever is left, so
// an exception in run() never leaves a process behind.
class Supervisor {
public:
    Supervisor(pid_t pid, UniqueFd channel, const IdMaps& ids, const Plan& plan)
        : pid_(pid), pidfd_(pidfd_of_child(pid)), channel_(std::move(channel)), ids_(ids), plan_(plan) {}
    ~Supervisor() {
        if (reaped_) return;
        kill_all();
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    RunResult wait(std::chrono::seconds timeout, const std::atomic<bool>* cancel);

private:
    void handle(const Report& report, UniqueFd passed);
    void kill_all() noexcept;
    void drain();
    void reap();

    pid_t pid_;
    UniqueFd pidfd_;
    UniqueFd channel_;
    UniqueFd init_pidfd_;
    const IdMaps& ids_;
    const Plan& plan_;
    bool channel_eof_ = false;
    bool reaped_ = false;
    bool killed_ = false;
    std::optional<core::Error> failure_;
    std::optional<int> wait_status_;
};

void Supervisor::kill_all() noexcept {
    // Init first: its death takes the whole pid namespace with it.
    if (init_pidfd_) (void)::syscall(SYS_pidfd_send_signal, init_pidfd_.get(), SIGKILL, nullptr, 0);
    if (!reaped_) (void)::kill(pid_, SIGKILL);
    killed_ = true;
}

void Supervisor::handle(const Report& report, UniqueFd passed) {
    if (report.kind == Report::Kind::pid1) {
        init_pidfd_ = std::move(passed);
        if (killed_) kill_all();  // it started while we were killing: it goes too
        return;
    }
    // Once we killed the sandbox, what it reports is a consequence of that, not a failure.
    if (killed_) return;
    switch (report.kind) {
        case Report::Kind::need_maps:
            try {
                idmap::write_id_maps(pid_, ids_, plan_.id_writer);
            } catch (core::Error& e) {
                if (!failure_) failure_ = e.with_context("setting up the sandbox's user namespace");
                kill_all();
                return;
            }
            {
                Report go;
                go.kind = Report::Kind::maps_done;
                if (!Channel(channel_.get()).send(go)) kill_all();
            }
            return;
        case Report::Kind::failed:
            if (!failure_) failure_ = core::Error(static_cast<ErrorCategory>(report.category), report.text);
            return;
        case Report::Kind::exited: wait_status_ = report.wait_status; return;
        case Report::Kind::pid1:
        case Report::Kind::maps_done: return;
    }
}

void Supervisor::drain() {
    while (!channel_eof_) {
        Report report;
        UniqueFd passed;
        bool again = false;
        if (receive_report(channel_.get(), report, passed, again)) {
            handle(report, std::move(passed));
        } else {
            channel_eof_ = !again;
            return;
        }
    }
}

void Supervisor::reap() {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    // When we killed the sandbox, its init may still be tearing the pid namespace down; its pidfd
    // turns readable once it and everything in the namespace are gone.
    if (init_pidfd_) {
        pollfd p{init_pidfd_.get(), POLLIN, 0};
        while (::poll(&p, 1, 10'000) < 0 && errno == EINTR) {
        }
    }
}

RunResult Supervisor::wait(std::chrono::seconds timeout, const std::atomic<bool>* cancel) {
    const auto deadline = timeout.count() > 0 ? Clock::now() + timeout : Clock::time_point::max();
    RunResult result;
    bool exited = false;
    while (!exited) {
        // Short ticks: the cancel flag is a plain atomic another thread sets (Ctrl-C).
        pollfd fds[2] = {{channel_eof_ ? -1 : channel_.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
        if (::poll(fds, 2, 50) < 0 && errno != EINTR) core::throw_errno("poll on the sandbox");
        drain();
        exited = fds[1].revents != 0;
        if (killed_ || exited || wait_status_ || failure_) continue;
        if (cancel != nullptr && cancel->load()) {
            result.cancelled = true;
            kill_all();
        } else if (Clock::now() >= deadline) {
            result.timed_out = true;
            kill_all();
        }
    }
    drain();  // init reports before it exits, sandbox_main exits after it: all is in the socket
    reap();

    if (failure_) throw *failure_;
    if (result.cancelled || result.timed_out) {
        result.signal = SIGKILL;
        result.exit_code = 128 + SIGKILL;
        return result;
    }
    if (!wait_status_)
        throw core::Error(ErrorCategory::internal, "the sandbox ended before its command did, without saying why");
    if (WIFSIGNALED(*wait_status_)) {
        result.signal = WTERMSIG(*wait_status_);
        result.exit_code = 128 + result.signal;
    } else {
        result.exit_code = WEXITSTATUS(*wait_status_);
    }
    return result;
}

}  // namespace

RunResult run(const RunSpec& spec, const IdMaps& ids, const std::atomic<bool>* cancel) {
    // Decide everything that can be decided here, where failures are exceptions.
    const Plan plan = make_plan(spec, ids);
    if (plan.overlay) clear_overlay_workdir(plan.workdir);
    // A plain rootfs has no stub layer: its mount points are made now and removed after the run.
    std::optional<RootfsStubs> stubs;
    if (!plan.overlay) stubs.emplace(plan.rootfs, plan.mount_points);

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) core::throw_errno("socketpair");
    UniqueFd ours(sv[0]), theirs(sv[1]);
    const pid_t self = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) core::throw_errno("cannot fork the sandbox");
    if (pid == 0) {
        ::close(sv[0]);
        child::sandbox_main(plan, Channel(sv[1]), self);
    }
    theirs.reset();

    Supervisor supervisor(pid, std::move(ours), ids, plan);
    return supervisor.wait(spec.timeout, cancel);
}

bool overlay_available(const std::filesystem::path& dir) {
    try {
        core::TempDir tmp(dir, "ocibuild-overlay-probe");
        const auto& t = tmp.path();
        for (const char* sub : {"lower", "upper", "work", "merged"}) std::filesystem::create_directory(t / sub);
        const bool userns = ::geteuid() != 0;
        const std::string uid_map = "0 " + std::to_string(::geteuid()) + " 1";
        const std::string gid_map = "0 " + std::to_string(::getegid()) + " 1";
        const auto options =
            overlay_options({(t / "lower").string()}, (t / "upper").string(), (t / "work").string(), userns);
        const auto merged = (t / "merged").string();

        pid_t pid = ::fork();
        if (pid < 0) return false;
        if (pid == 0) {
            // What run() does, in miniature: a user namespace mapping us to root (unless root),
            // a private mount namespace, the overlay with the same options, one write through it.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::unshare(CLONE_NEWNS | (userns ? CLONE_NEWUSER : 0)) != 0) ::_exit(1);
            auto put = [](const char* path, const std::string& text) {
                int fd = ::open(path, O_WRONLY | O_CLOEXEC);
                bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
                if (fd >= 0) ::close(fd);
                return ok;
            };
            if (userns && !(put("/proc/self/setgroups", "deny") && put("/proc/self/uid_map", uid_map) &&
                            put("/proc/self/gid_map", gid_map)))
                ::_exit(2);
            if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(3);
            if (::mount("overlay", merged.c_str(), "overlay", MS_NODEV, options.c_str()) != 0) ::_exit(4);
            int fd = ::open((merged + "/probe").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
            ::_exit(fd >= 0 ? 0 : 5);
        }
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && std::filesystem::exists(t / "upper" / "probe");
        clear_overlay_workdir(t / "work");
        return ok;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace ocibuild::sandbox
