// Reports between the sandbox's processes and run().
#include "channel.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace ocibuild::sandbox {

namespace {

// The categories callers branch on; "the kernel says no" to a namespace or mount is unsupported
// here (what to do about it is in the message), not unauthorized.
core::ErrorCategory category_of(int err) {
    switch (err) {
        case ENOENT:
        case ENOTDIR: return core::ErrorCategory::not_found;
        case EPERM:
        case EACCES:
        case ENOSYS:
        case EOPNOTSUPP:
        case ENOSPC:  // max_user_namespaces reached (0 = disabled)
            return core::ErrorCategory::unsupported;
        case EINVAL:
        case ELOOP:
        case ENAMETOOLONG: return core::ErrorCategory::invalid_input;
        default: return core::ErrorCategory::internal;
    }
}

[[noreturn]] void vdie(const Channel& ch, int category, int err, const char* fmt, va_list ap) noexcept {
    Report r;
    r.kind = Report::Kind::failed;
    r.category = category;
    r.err = err;
    int n = std::vsnprintf(r.text, sizeof r.text, fmt, ap);
    if (err != 0 && n >= 0 && static_cast<std::size_t>(n) < sizeof r.text)
        std::snprintf(r.text + n, sizeof r.text - static_cast<std::size_t>(n), ": %s", std::strerror(err));
    (void)ch.send(r);
    ::_exit(125);
}

}  // namespace

bool Channel::send(const Report& report, int pass_fd) const noexcept {
    iovec iov{const_cast<Report*>(&report), sizeof report};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (pass_fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    for (;;) {
        if (::sendmsg(fd_, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof report)) return true;
        if (errno != EINTR) return false;
    }
}

bool Channel::receive(Report& report) const noexcept {
    for (;;) {
        ssize_t n = ::recv(fd_, &report, sizeof report, 0);
        if (n == static_cast<ssize_t>(sizeof report)) return true;
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
}

void Channel::die(core::ErrorCategory category, int err, const char* fmt, ...) const noexcept {
    va_list ap;
    va_start(ap, fmt);
    vdie(*this, static_cast<int>(category), err, fmt, ap);
}

void Channel::die_errno(const char* fmt, ...) const noexcept {
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vdie(*this, static_cast<int>(category_of(err)), err, fmt, ap);
}

bool receive_report(int fd, Report& report, core::UniqueFd& passed, bool& again) {
    again = false;
    iovec iov{&report, sizeof report};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            again = true;
            return false;
        }
        core::throw_errno("cannot read the sandbox's reports");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int received = -1;
            std::memcpy(&received, CMSG_DATA(c), sizeof(int));
            passed.reset(received);
        }
    }
    if (n == 0) return false;
    if (n != static_cast<ssize_t>(sizeof report))
        throw core::Error(core::ErrorCategory::internal, "the sandbox sent a truncated report");
    report.text[sizeof report.text - 1] = '\0';
    return true;
}

}  // namespace ocibuild::sandbox
