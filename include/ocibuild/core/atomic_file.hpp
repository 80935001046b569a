#pragma once
// A file that appears under its final name complete or not at all: written to a unique temporary
// name in the same directory, fsynced, renamed over the target, and the directory fsynced.
#include <filesystem>
#include <string>
#include <string_view>

#include "ocibuild/core/fd.hpp"

namespace ocibuild::core {

class AtomicFile {
public:
    /// Creates the temporary file beside `target` (same filesystem, so rename is atomic).
    explicit AtomicFile(std::filesystem::path target, unsigned mode = 0644);
    ~AtomicFile();  // removes the temporary file unless committed
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, std::size_t size);
    void write(std::string_view data) { write(data.data(), data.size()); }
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] const std::filesystem::path& temp_path() const noexcept { return temp_; }
    /// fsync, rename onto the target, fsync the directory. Throws core::Error on failure.
    void commit();

private:
    std::filesystem::path target_;
    std::filesystem::path temp_;
    UniqueFd fd_;
    bool committed_ = false;
};

/// Writes `data` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode = 0644);

/// A name unlikely to collide with any other process's: pid plus random bytes.
[[nodiscard]] std::string unique_suffix();

}  // namespace ocibuild::core
