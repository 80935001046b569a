#pragma once
// Shared by the sandbox tests: a busybox image built by hand (overlay lowerdirs with real
// whiteouts and opaque xattrs, or one plain folder), a runner that calls sandbox::run() in this
// process or runs tests/sandbox_driver as an unprivileged user (setpriv: it execs in place, so the
// driver's pid is the one we SIGKILL), a loopback TCP sink, and probes for leftover processes and
// mounts.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

namespace sandbox_test {

namespace fs = std::filesystem;
using namespace ocibuild;
using namespace std::chrono_literals;

inline constexpr const char* test_user = "ocibuild-sbx";
inline constexpr const char* busybox = "/bin/busybox";

inline bool have_busybox() { return ::access(busybox, X_OK) == 0; }

inline std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

/// Removes a tree whatever overlay left in it (mode-0 work folders).
inline void remove_tree(const fs::path& root) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
    }
    ::chmod(root.c_str(), 0700);
    fs::remove_all(root, ec);
}

inline void chown_tree(const fs::path& root, uid_t uid, gid_t gid) {
    ::lchown(root.c_str(), uid, gid);
    for (const auto& e : fs::recursive_directory_iterator(root)) ::lchown(e.path().c_str(), uid, gid);
}

/// Every entry under `root` with its type, size, mode, owner and mtime: a tree's fingerprint.
inline std::map<std::string, std::string> listing(const fs::path& root) {
    std::map<std::string, std::string> out;
    std::error_code ec;
    if (!fs::exists(root, ec)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
        struct stat st {};
        ::lstat(e.path().c_str(), &st);
        std::ostringstream s;
        s << std::oct << st.st_mode << std::dec << ' ' << st.st_uid << ':' << st.st_gid << ' ' << st.st_size << ' '
          << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec;
        out[fs::relative(e.path(), root).string()] = s.str();
    }
    return out;
}

inline std::set<std::string> names(const std::map<std::string, std::string>& l) {
    std::set<std::string> s;
    for (const auto& [k, v] : l) s.insert(k);
    return s;
}

/// The lines of this process's mountinfo that a leaking sandbox would add: anything naming the
/// test's folder, an overlay on /proc/self/fd paths, a tmpfs over /tmp, /run, /mnt or /var/tmp.
/// (Other sessions may mount and unmount unrelated things meanwhile.)
inline std::vector<std::string> sandbox_mounts(const fs::path& base) {
    std::vector<std::string> lines;
    std::istringstream in(slurp("/proc/self/mountinfo"));
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::string id, parent, devno, root, point;
        f >> id >> parent >> devno >> root >> point;
        bool scratch = point == "/tmp" || point == "/run" || point == "/mnt" || point == "/var/tmp";
        bool ours = line.find(base.string()) != std::string::npos || line.find("/proc/self/fd/") != std::string::npos;
        if (scratch || ours)
            lines.push_back(line);
    }
    return lines;
}

/// Pids of processes whose command line is exactly `argv`.
inline std::vector<pid_t> processes_running(const std::vector<std::string>& argv) {
    std::string want;
    for (const auto& a : argv) want += a + '\0';
    std::vector<pid_t> pids;
    for (const auto& e : fs::directory_iterator("/proc")) {
        auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        if (slurp(e.path() / "cmdline") == want) pids.push_back(std::stoi(name));
    }
    return pids;
}

/// Pids of processes whose argv[0] is `program`.
inline std::vector<pid_t> processes_of(const std::string& program) {
    std::vector<pid_t> pids;
    for (const auto& e : fs::directory_iterator("/proc")) {
        auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        auto cmdline = slurp(e.path() / "cmdline");
        if (cmdline.compare(0, program.size() + 1, program + '\0') == 0) pids.push_back(std::stoi(name));
    }
    return pids;
}

/// Pids whose parent is this process.
inline std::vector<pid_t> children_of_self() {
    std::vector<pid_t> pids;
    auto self = std::to_string(::getpid());
    for (const auto& e : fs::directory_iterator("/proc")) {
        auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::istringstream stat(slurp(e.path() / "stat"));
        std::string pid, comm, state, ppid;
        // comm may hold spaces; it ends at the last ')'.
        auto text = stat.str();
        auto close = text.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(text.substr(close + 2));
        rest >> state >> ppid;
        if (ppid == self) pids.push_back(std::stoi(name));
    }
    return pids;
}

/// Waits until `pred` holds or `limit` passes; returns whether it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

/// A TCP listener on 127.0.0.1 in the host's network namespace; collects what clients send.
class TcpSink {
public:
    TcpSink() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
        REQUIRE(::listen(fd_, 8) == 0);
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~TcpSink() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    TcpSink(const TcpSink&) = delete;
    TcpSink& operator=(const TcpSink&) = delete;
    [[nodiscard]] int port() const { return port_; }
    [[nodiscard]] int connections() const { return connections_; }
    [[nodiscard]] std::string received() {
        std::lock_guard lock(mutex_);
        return data_;
    }

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++connections_;
            char buf[256];
            for (;;) {
                pollfd q{c, POLLIN, 0};
                if (::poll(&q, 1, 2000) <= 0) break;
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                std::lock_guard lock(mutex_);
                data_.append(buf, static_cast<std::size_t>(n));
            }
            ::close(c);
        }
    }
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::mutex mutex_;
    std::string data_;
    std::thread thread_;
};

/// Runs `argv` with stdout and stderr into files; returns its pid.
inline pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int n = ::open("/dev/null", O_RDONLY);
        ::dup2(n, 0);
        ::dup2(o, 1);
        ::dup2(e, 2);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    return pid;
}

inline int wait_exit(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// The test user's uid and gid, created (with subordinate ids, as useradd does) when missing.
/// nullopt when that is impossible here (not root, no useradd).
inline std::optional<std::pair<uid_t, gid_t>> ensure_test_user() {
    if (::geteuid() != 0) return std::nullopt;
    auto lookup = []() -> std::optional<std::pair<uid_t, gid_t>> {
        passwd* pw = ::getpwnam(test_user);
        if (pw == nullptr) return std::nullopt;
        return std::make_pair(pw->pw_uid, pw->pw_gid);
    };
    if (auto found = lookup()) return found;
    std::string cmd = std::string("useradd -m ") + test_user + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return std::nullopt;
    return lookup();
}

}  // namespace sandbox_test
