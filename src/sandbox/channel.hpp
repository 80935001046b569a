#pragma once
// The one channel between run() and the sandbox's processes: a SOCK_SEQPACKET socket pair, so
// every report is one atomic message whoever of the three processes sends it, a file descriptor
// can travel with it (the pidfd of the sandbox's pid 1), and the parent sees EOF when all are gone.
//
// Child-side code calls die() the way bubblewrap calls die_with_error(): report and _exit. No
// exception is ever thrown after fork (the unwinder may take locks another thread of the parent
// held at fork time).
#include <cstdint>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::sandbox {

struct Report {
    enum class Kind : std::uint32_t {
        need_maps = 1,  // child → parent: my user namespace exists, write its id maps
        maps_done = 2,  // parent → child: written, go on
        pid1 = 3,       // child → parent: the sandbox's init runs (its pidfd attached)
        failed = 4,     // child → parent: setup failed (category, errno, text)
        exited = 5,     // child → parent: the command ended (wait_status)
    };
    Kind kind = Kind::failed;
    std::int32_t category = 0;  // core::ErrorCategory
    std::int32_t err = 0;
    std::int32_t wait_status = 0;
    char text[1500] = {};
};

/// The child's end.
class Channel {
public:
    explicit Channel(int fd) noexcept : fd_(fd) {}
    [[nodiscard]] int fd() const noexcept { return fd_; }

    /// Sends `report` (and `pass_fd` when >= 0); false when the parent is gone.
    bool send(const Report& report, int pass_fd = -1) const noexcept;
    /// Waits for one message from the parent; false on EOF or error.
    bool receive(Report& report) const noexcept;

    /// Reports a setup failure "<what>: <strerror(err)>" (no suffix when err is 0) and _exits.
    [[noreturn]] void die(core::ErrorCategory category, int err, const char* fmt, ...) const noexcept
        __attribute__((format(printf, 4, 5)));
    /// die() with errno's category (ENOENT → not_found, EPERM → unauthorized, ...).
    [[noreturn]] void die_errno(const char* fmt, ...) const noexcept __attribute__((format(printf, 2, 3)));

private:
    int fd_;
};

/// The parent's end: one message, with the fd that came with it. Returns false on EOF; throws on
/// errors other than EAGAIN/EINTR (which return false with `again` set).
bool receive_report(int fd, Report& report, core::UniqueFd& passed, bool& again);

}  // namespace ocibuild::sandbox
