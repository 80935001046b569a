#pragma once
// Owning file descriptors and the few whole-fd helpers everybody needs.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace ocibuild::core {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

/// open(2) with O_CLOEXEC; throws core::Error naming the path.
[[nodiscard]] UniqueFd open_file(const std::filesystem::path& path, int flags, unsigned mode = 0644);
/// Writes all bytes, retrying on EINTR and short writes; throws naming `what`.
void write_all(int fd, const void* data, std::size_t size, std::string_view what);
/// Reads up to `size` bytes (fewer only at EOF); throws naming `what`.
[[nodiscard]] std::size_t read_full(int fd, void* data, std::size_t size, std::string_view what);
/// Whole file into memory; refuses files larger than max_size (these are JSON documents, not layers).
[[nodiscard]] std::string read_file(const std::filesystem::path& path,
                                    std::uint64_t max_size = 64ull << 20);
/// fsync of a directory so a rename in it is durable.
void fsync_dir(const std::filesystem::path& dir);

/// An exclusive flock(2) on `path` (created when missing), held until destruction. Each lock opens
/// the file anew, so threads of one process exclude each other too. Blocking unless `try_only`, in
/// which case the lock is empty (held() false) when someone else holds it.
class FileLock {
public:
    explicit FileLock(const std::filesystem::path& path, bool try_only = false);
    [[nodiscard]] bool held() const noexcept { return static_cast<bool>(fd_); }

private:
    UniqueFd fd_;  // closing it releases the lock
};

}  // namespace ocibuild::core
