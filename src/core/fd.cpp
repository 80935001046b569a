#include "ocibuild/core/fd.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "ocibuild/core/error.hpp"

namespace ocibuild::core {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

UniqueFd open_file(const std::filesystem::path& path, int flags, unsigned mode) {
    int fd;
    do {
        fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("cannot open " + path.string());
    return UniqueFd(fd);
}

void write_all(int fd, const void* data, std::size_t size, std::string_view what) {
    auto* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + std::string(what));
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

std::size_t read_full(int fd, void* data, std::size_t size, std::string_view what) {
    auto* p = static_cast<char*>(data);
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::read(fd, p + done, size - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + std::string(what));
        }
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

std::string read_file(const std::filesystem::path& path, std::uint64_t max_size) {
    auto fd = open_file(path, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path.string());
    if (static_cast<std::uint64_t>(st.st_size) > max_size)
        throw Error(ErrorCategory::invalid_input,
                    path.string() + " is too large (" + std::to_string(st.st_size) + " bytes)");
    std::string out;
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t n = read_full(fd.get(), out.data(), out.size(), path.string());
    out.resize(n);
    return out;
}

void fsync_dir(const std::filesystem::path& dir) {
    auto fd = open_file(dir, O_RDONLY | O_DIRECTORY);
    if (::fsync(fd.get()) != 0 && errno != EINVAL) throw_errno("cannot fsync " + dir.string());
}

FileLock::FileLock(const std::filesystem::path& path, bool try_only) {
    UniqueFd fd = open_file(path, O_RDWR | O_CREAT, 0644);
    for (;;) {
        if (::flock(fd.get(), LOCK_EX | (try_only ? LOCK_NB : 0)) == 0) {
            fd_ = std::move(fd);
            return;
        }
        if (errno == EWOULDBLOCK && try_only) return;
        if (errno != EINTR) throw_errno("cannot lock " + path.string());
    }
}

}  // namespace ocibuild::core
