#pragma once
#include <filesystem>

namespace ocibuild::core {

/// A directory removed (recursively) when this object dies.
class TempDir {
public:
    /// Creates a fresh directory under `parent` (default: $TMPDIR or /tmp) named prefix-XXXXXX.
    explicit TempDir(const std::filesystem::path& parent = {}, const char* prefix = "ocibuild");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

}  // namespace ocibuild::core
