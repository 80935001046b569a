#include "file_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "ocibuild/core/error.hpp"
#include "rootless_owner.hpp"
#include "safe_path.hpp"

namespace ocibuild::layer::detail {
namespace {

[[noreturn]] void failed(const FileTask& t, int err, const std::string& action) {
    core::throw_errno(err, t.prefix + action);
}

}  // namespace

int write_all_at(int fd, const char* data, std::size_t n, std::int64_t offset) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        data += w;
        n -= static_cast<std::size_t>(w);
        offset += w;
    }
    return 0;
}

void throw_chown_failed(int err, const std::string& prefix, std::uint32_t uid, std::uint32_t gid) {
    if (err != EINVAL) core::throw_errno(err, prefix + "chown");
    throw core::Error(core::ErrorCategory::unsupported,
                      prefix + "cannot chown to " + std::to_string(uid) + ":" + std::to_string(gid) +
                          ": the id is not mapped in this user namespace (rootless builds map the ranges "
                          "of /etc/subuid and /etc/subgid; give this user more subordinate ids)");
}

void finish_file(core::UniqueFd& fd, const FileAttrs& a, const std::string& prefix,
                 const std::function<void(int)>& after_chown) {
    // chown and chmod only what differs: one stat costs less than two setattrs (on ext4 each
    // dirties the inode), and most files are root's, made by root with their final mode.
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) core::throw_errno(prefix + "stat");
    if (a.chown && (st.st_uid != a.uid || st.st_gid != a.gid) && ::fchown(fd.get(), a.uid, a.gid) != 0)
        throw_chown_failed(errno, prefix, a.uid, a.gid);
    if (after_chown) after_chown(fd.get());
    if (!a.owner_xattr.empty())
        if (const int err = set_xattr_fd(fd.get(), false, rootless_xattr, a.owner_xattr); err != 0)
            core::throw_errno(err, prefix + "recording the owner in " + rootless_xattr);
    // After chown, which clears setuid and setgid; a chown that changed nothing clears nothing.
    if ((st.st_mode & 07777) != a.mode && ::fchmod(fd.get(), a.mode) != 0) core::throw_errno(prefix + "chmod");
    if (::futimens(fd.get(), a.times) != 0) core::throw_errno(prefix + "setting times");
    if (::close(fd.release()) != 0) core::throw_errno(prefix + "closing the file");
}

bool write_file_task(const FileTask& t, bool replace) {
    const int parent = t.parent->get();
    const char* name = t.name.c_str();
    constexpr int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    const mode_t create_mode = file_create_mode(t.attrs.mode);
    core::UniqueFd fd(::openat(parent, name, flags, create_mode));
    if (!fd && errno == EEXIST) {
        struct stat st {};
        if (!replace) return false;
        if (::fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) failed(t, errno, "stat of the existing file");
        if (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) return false;
        if (::unlinkat(parent, name, 0) != 0) failed(t, errno, "removing the existing \"" + t.name + "\"");
        fd = core::UniqueFd(::openat(parent, name, flags, create_mode));
    }
    if (!fd) failed(t, errno, "creating the file");
    PartialFile partial(parent, name, fd);  // a failure removes the file

    std::size_t pos = 0;
    std::int64_t end = 0;
    for (const auto& [offset, length] : t.segments) {
        if (const int err = write_all_at(fd.get(), t.data.data() + pos, length, offset); err != 0)
            failed(t, err, "writing");
        pos += length;
        end = std::max(end, offset + static_cast<std::int64_t>(length));
    }
    if (t.size > end && ::ftruncate(fd.get(), t.size) != 0) failed(t, errno, "extending the file");
    finish_file(fd, t.attrs, t.prefix);
    partial.keep();
    return true;
}

FileWriter::~FileWriter() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

FileTask FileWriter::new_task() {
    if (spares_.empty()) return {};
    FileTask t = std::move(spares_.back());
    spares_.pop_back();
    return t;
}

void FileWriter::submit(FileTask task) {
    if (trouble_.load(std::memory_order_acquire)) {
        std::lock_guard lock(mutex_);
        if (error_) std::rethrow_exception(error_);
    }
    Key key{task.parent_id, task.name};
    ++names_[key];
    names_order_.push_back(std::move(key));
    batch_data_ += task.data.size();
    batch_.push_back(std::move(task));
    if (batch_.size() >= batch_files || batch_data_ >= batch_bytes) flush();
}

void FileWriter::flush() {
    if (batch_.empty()) return;
    std::unique_lock lock(mutex_);
    if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
    cv_.wait(lock, [&] { return queue_.size() < max_batches || error_; });
    if (error_) std::rethrow_exception(error_);
    submitted_ += batch_.size();
    queue_.push_back(std::move(batch_));
    batch_ = {};
    batch_data_ = 0;
    for (auto& done : done_) recycle(done);
    if (!done_.empty()) batch_ = std::move(done_.back());  // empty, with its capacity
    done_.clear();
    cv_.notify_all();
}

void FileWriter::recycle(Batch& done) {
    for (auto& t : done) {
        if (spares_.size() >= max_spares) break;
        t.parent.reset();
        t.data.clear();
        if (t.data.capacity() > max_spare_capacity) t.data = std::string();
        t.segments.clear();
        t.attrs.owner_xattr.clear();
        spares_.push_back(std::move(t));
    }
    done.clear();
}

bool FileWriter::idle() const {
    return batch_.empty() && finished_.load(std::memory_order_acquire) == submitted_ &&
           !trouble_.load(std::memory_order_acquire);
}

void FileWriter::reap() {
    const std::uint64_t finished = finished_.load(std::memory_order_acquire);
    while (reaped_ < finished) {
        const auto it = names_.find(names_order_.front());
        if (it != names_.end() && --it->second == 0) names_.erase(it);
        names_order_.pop_front();
        ++reaped_;
    }
}

bool FileWriter::pending(const DirId& dir, std::string_view name) {
    if (trouble_.load(std::memory_order_acquire)) return true;  // drain() sorts it out
    reap();
    return names_.contains(Key{dir, std::string(name)});
}

std::vector<FileTask> FileWriter::drain() {
    flush();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return queue_.empty() && !running_; });
    for (auto& done : done_) recycle(done);
    done_.clear();
    names_.clear();
    names_order_.clear();
    reaped_ = finished_.load(std::memory_order_acquire);
    if (error_) {
        bounced_.clear();
        std::rethrow_exception(error_);
    }
    std::vector<FileTask> bounced = std::move(bounced_);
    bounced_.clear();
    trouble_.store(false, std::memory_order_release);
    return bounced;
}

void FileWriter::work() {
    std::unique_lock lock(mutex_);
    for (;;) {
        cv_.wait(lock, [&] { return !queue_.empty() || stop_; });
        if (stop_) return;
        Batch batch = std::move(queue_.front());
        queue_.pop_front();
        running_ = true;
        const bool skip = error_ != nullptr;  // after a failure nothing more is written
        cv_.notify_all();                     // room in the queue
        lock.unlock();
        std::exception_ptr error;
        std::vector<std::size_t> bounced;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!skip && !error) {
                try {
                    if (!write_file_task(batch[i], true)) bounced.push_back(i);
                } catch (...) {
                    error = std::current_exception();
                }
            }
        }
        lock.lock();
        if (error && !error_) error_ = error;
        for (const auto i : bounced) bounced_.push_back(std::move(batch[i]));
        if (error_ || !bounced_.empty()) trouble_.store(true, std::memory_order_release);
        finished_.fetch_add(batch.size(), std::memory_order_release);
        running_ = false;
        done_.push_back(std::move(batch));
        cv_.notify_all();
    }
}

}  // namespace ocibuild::layer::detail
