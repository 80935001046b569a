#include "ocibuild/core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>

#include "ocibuild/core/error.hpp"

namespace ocibuild::core {

std::string unique_suffix() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    char buf[48];
    std::snprintf(buf, sizeof buf, "%d-%016llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(rng()));
    return buf;
}

AtomicFile::AtomicFile(std::filesystem::path target, unsigned mode) : target_(std::move(target)) {
    auto dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    temp_ = dir / ("." + target_.filename().string() + ".tmp-" + unique_suffix());
    fd_ = open_file(temp_, O_WRONLY | O_CREAT | O_EXCL, mode);
    // The umask must not decide the published mode: set it explicitly.
    if (::fchmod(fd_.get(), mode) != 0) throw_errno("cannot chmod " + temp_.string());
}

AtomicFile::~AtomicFile() {
    if (!committed_) {
        fd_.reset();
        ::unlink(temp_.c_str());
    }
}

void AtomicFile::write(const void* data, std::size_t size) { write_all(fd_.get(), data, size, temp_.string()); }

void AtomicFile::commit() {
    if (::fsync(fd_.get()) != 0) throw_errno("cannot fsync " + temp_.string());
    fd_.reset();
    if (::rename(temp_.c_str(), target_.c_str()) != 0) throw_errno("cannot rename to " + target_.string());
    committed_ = true;
    auto dir = target_.parent_path();
    fsync_dir(dir.empty() ? std::filesystem::path(".") : dir);
}

void write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode) {
    AtomicFile f(path, mode);
    f.write(data);
    f.commit();
}

}  // namespace ocibuild::core
