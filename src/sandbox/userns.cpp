// run_in_user_namespace(): a function run as root of a user namespace with the sandbox's maps.
// The handshake is run()'s (child unshares, parent writes the maps, child goes on) over a stream
// socket that then carries the result back: one status byte, the error category, the length and
// the bytes of fn's result or of the error message.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grp.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "idmap.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

namespace ocibuild::sandbox {

namespace {

using core::ErrorCategory;

constexpr char ready_byte = 'r';  // child → parent: my user namespace exists
constexpr char go_byte = 'g';     // parent → child: its maps are written
constexpr std::uint8_t result_ok = 0;
constexpr std::uint8_t result_error = 1;

bool write_all(int fd, const void* data, std::size_t size) noexcept {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

// Reads until EOF (the child exits, or closes its end).
std::string read_to_eof(int fd) {
    std::string text;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) core::throw_errno("cannot read from the user namespace's process");
        if (n == 0) return text;
        text.append(buf, static_cast<std::size_t>(n));
    }
}

void send_result(int fd, std::uint8_t status, ErrorCategory category, const std::string& bytes) noexcept {
    const auto cat = static_cast<std::int32_t>(category);
    const std::uint64_t size = bytes.size();
    (void)(write_all(fd, &status, 1) && write_all(fd, &cat, sizeof cat) && write_all(fd, &size, sizeof size) &&
           write_all(fd, bytes.data(), bytes.size()));
}

[[noreturn]] void child_main(int fd, pid_t parent, idmap::Writer writer,
                             const std::function<std::string()>& fn) noexcept {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(125);
    if (::unshare(CLONE_NEWUSER) != 0) {
        send_result(fd, result_error, ErrorCategory::unsupported,
                    std::string("cannot create a user namespace: ") + std::strerror(errno) +
                        " (are unprivileged user namespaces disabled? see /proc/sys/user/max_user_namespaces, "
                        "kernel.unprivileged_userns_clone, AppArmor's restrict_unprivileged_userns)");
        ::_exit(0);
    }
    char byte = ready_byte;
    if (!write_all(fd, &byte, 1)) ::_exit(125);
    ssize_t n = 0;
    while ((n = ::read(fd, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1 || byte != go_byte) ::_exit(125);  // the parent could not write the maps
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) {
        send_result(fd, result_error, ErrorCategory::internal,
                    std::string("cannot become root in the user namespace: ") + std::strerror(errno));
        ::_exit(0);
    }
    if (writer != idmap::Writer::self_single) (void)::setgroups(0, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a change of euid clears it
    if (::getppid() != parent) ::_exit(125);
    try {
        send_result(fd, result_ok, ErrorCategory::internal, fn());
    } catch (const core::Error& e) {
        send_result(fd, result_error, e.category(), e.what());
    } catch (const std::exception& e) {
        send_result(fd, result_error, ErrorCategory::internal, e.what());
    } catch (...) {
        send_result(fd, result_error, ErrorCategory::internal, "unknown exception in the user namespace");
    }
    // _exit: no atexit handlers or static destructors of the parent's copy of the program.
    ::_exit(0);
}

std::string describe_status(int status) {
    if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
    return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

std::string run_in_user_namespace(const IdMaps& ids, const std::function<std::string()>& fn) {
    const idmap::Writer writer = idmap::writer_for(ids);
    if (writer == idmap::Writer::none) return fn();

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) core::throw_errno("socketpair");
    core::UniqueFd ours(sv[0]), theirs(sv[1]);
    const pid_t self = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) core::throw_errno("cannot fork a process for a user namespace");
    if (pid == 0) {
        ::close(sv[0]);
        child_main(sv[1], self, writer, fn);
    }
    theirs.reset();

    auto reap = [pid] {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
    };
    char byte = 0;
    ssize_t n = 0;
    while ((n = ::read(ours.get(), &byte, 1)) < 0 && errno == EINTR) {
    }
    std::string reply;  // the result: after the handshake, or at once when the child could not unshare
    if (n == 1 && byte != ready_byte) {
        reply.assign(1, byte);
    } else if (n == 1) {
        try {
            idmap::write_id_maps(pid, ids, writer);
        } catch (core::Error& e) {
            ::kill(pid, SIGKILL);
            reap();
            throw e.with_context("setting up a user namespace");
        }
        byte = go_byte;
        if (!write_all(ours.get(), &byte, 1)) {
            ::kill(pid, SIGKILL);
            reap();
            throw core::Error(ErrorCategory::internal, "the user namespace's process ended before its maps were set");
        }
    }
    // Read before reaping: a large result would otherwise block the child on a full socket buffer.
    try {
        reply += read_to_eof(ours.get());
    } catch (...) {
        ::kill(pid, SIGKILL);
        reap();
        throw;
    }
    const int status = reap();

    constexpr std::size_t header = 1 + sizeof(std::int32_t) + sizeof(std::uint64_t);
    std::uint64_t size = 0;
    if (reply.size() >= header) std::memcpy(&size, reply.data() + 1 + sizeof(std::int32_t), sizeof size);
    if (reply.size() < header || reply.size() - header != size)
        throw core::Error(ErrorCategory::internal,
                          "the process working in a user namespace " + describe_status(status) + " without a result");
    std::string bytes = reply.substr(header);
    if (static_cast<std::uint8_t>(reply[0]) == result_ok) return bytes;
    std::int32_t category = 0;
    std::memcpy(&category, reply.data() + 1, sizeof category);
    if (category < 0 || category > static_cast<std::int32_t>(ErrorCategory::internal))
        category = static_cast<std::int32_t>(ErrorCategory::internal);
    throw core::Error(static_cast<ErrorCategory>(category), std::move(bytes));
}

}  // namespace ocibuild::sandbox
