#pragma once
// Private to the layer module: small regular files of a layer written on a thread of their own.
// In a layer of many small files, creating them is most of the applying thread's work while the
// decoding thread waits; handed over, the two overlap.
//
// The applier resolves the parent directory (an fd shared with its cache), reads the content and
// submits the file; the writer creates it as the applier would: O_EXCL with the final mode where
// it can, owner, rootless owner xattr, mode, times, and on failure no partial file. Something in
// the way is unlinked when it is a file, fifo or device; a directory or a symlink (whose removal
// changes what paths resolve to) comes back to the applier, from drain().
//
// Order is the applier's job: before it touches a name a submitted file will take (pending()),
// resolves a path it has no fd for, or removes anything, it calls drain().
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ocibuild/core/fd.hpp"

namespace ocibuild::layer::detail {

/// A directory, by inode: two paths (one through a symlink) may name the same one.
struct DirId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const DirId&) const = default;
};

/// What a regular file gets after its content: owner, rootless owner record, mode, times.
struct FileAttrs {
    mode_t mode = 0;
    bool chown = false;   // give it uid:gid (not rootless)
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::string owner_xattr;  // rootless: the user.rootlesscontainers value, "" for none
    struct timespec times[2] {};
};

struct FileTask {
    std::shared_ptr<const core::UniqueFd> parent;
    DirId parent_id;
    std::string name;
    std::string path;     // in the tree, for the applier's remove_existing
    std::string entry;    // the entry's name as in the tar
    std::string prefix;   // for messages: "layer …: entry \"…\": "
    std::string data;     // the bytes of `segments`, one after another
    std::vector<std::pair<std::int64_t, std::size_t>> segments;  // file offset, length (holes between)
    std::int64_t size = 0;
    FileAttrs attrs;
};

/// The mode a regular file is created with: its own where the umask keeps it (then no chmod is
/// needed), unless that has setuid/setgid/sticky (which must follow the chown) or leaves the
/// owner unable to write; 0600 otherwise.
[[nodiscard]] inline mode_t file_create_mode(mode_t mode) {
    return (mode & 07000) == 0 && (mode & 0200) != 0 ? mode : 0600;
}

/// pwrite of all `n` bytes at `offset` (holes before it stay holes). Returns 0 or an errno.
[[nodiscard]] int write_all_at(int fd, const char* data, std::size_t n, std::int64_t offset);

/// The error for a failed chown: for EINVAL (an id the user namespace does not map) it says
/// which ids, and where more come from.
[[noreturn]] void throw_chown_failed(int err, const std::string& prefix, std::uint32_t uid, std::uint32_t gid);

/// Gives the file just written on `fd` its attributes, `after_chown(fd)` in between (xattrs: a
/// chown drops security.capability), and closes it. Throws core::Error starting with `prefix`.
void finish_file(core::UniqueFd& fd, const FileAttrs& attrs, const std::string& prefix,
                 const std::function<void(int)>& after_chown = {});

/// A file being written: unless keep() is called, it is closed and removed when this goes (a
/// failure), so that the tree never holds a partial file.
class PartialFile {
public:
    PartialFile(int parent, const char* name, core::UniqueFd& fd) : parent_(parent), name_(name), fd_(fd) {}
    ~PartialFile() {
        if (!armed_) return;
        fd_.reset();
        (void)::unlinkat(parent_, name_, 0);
    }
    PartialFile(const PartialFile&) = delete;
    PartialFile& operator=(const PartialFile&) = delete;
    void keep() { armed_ = false; }

private:
    int parent_;
    const char* name_;
    core::UniqueFd& fd_;
    bool armed_ = true;
};

/// Creates the file of `task` in its parent. With `replace`, a non-directory, non-symlink in the
/// way is unlinked first; returns false (nothing done) when something else is there (EEXIST).
/// Throws core::Error naming the entry; a file it made is removed again.
bool write_file_task(const FileTask& task, bool replace);

/// Owned by the applying thread: every member but the worker's is called from it alone. Files go
/// over in batches, and come back to be reused, so that the two threads meet (lock, wake-up,
/// malloc arena) once per batch rather than once per file.
class FileWriter {
public:
    FileWriter() = default;
    ~FileWriter();
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;

    /// An empty task to fill (its buffers possibly reused).
    [[nodiscard]] FileTask new_task();
    /// Hands `task` over; waits while too much is queued. Throws the failure of an earlier task.
    void submit(FileTask task);
    /// Nothing handed over is unwritten.
    [[nodiscard]] bool idle() const;
    /// Whether a file handed over and not written yet is named `name` in directory `dir` (or one
    /// came back, to be written by drain()'s caller).
    [[nodiscard]] bool pending(const DirId& dir, std::string_view name);
    /// Waits until every file handed over is written. Returns those that found a directory or a
    /// symlink in their place, in order, for the caller to write; throws the first failure.
    [[nodiscard]] std::vector<FileTask> drain();

    static constexpr std::size_t max_file_size = std::size_t{1} << 20;  // larger ones: the applier

private:
    struct Key {
        DirId dir;
        std::string name;
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept {
            return std::hash<std::string>{}(k.name) ^ (std::hash<ino_t>{}(k.dir.ino) * 0x9e3779b97f4a7c15ULL) ^
                   std::hash<dev_t>{}(k.dir.dev);
        }
    };
    using Batch = std::vector<FileTask>;

    void flush();
    void reap();                       // forgets names of files the worker is done with
    void recycle(Batch& done);         // (under mutex_) done tasks become spares
    void work();

    static constexpr std::size_t batch_files = 32;
    static constexpr std::size_t batch_bytes = std::size_t{1} << 20;
    static constexpr std::size_t max_batches = 8;    // queued, beyond the one being written
    static constexpr std::size_t max_spares = 256;
    static constexpr std::size_t max_spare_capacity = std::size_t{64} << 10;

    // The applying thread's.
    Batch batch_;                  // being filled
    std::size_t batch_data_ = 0;   // bytes in batch_
    std::deque<Key> names_order_;  // of files handed over and not reaped, in order
    std::unordered_map<Key, int, KeyHash> names_;
    std::uint64_t submitted_ = 0;  // files in flushed batches
    std::uint64_t reaped_ = 0;
    std::vector<FileTask> spares_;

    // Shared, under mutex_.
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Batch> queue_;
    bool running_ = false;               // the worker holds a batch
    std::vector<Batch> done_;            // written, for reuse
    std::vector<FileTask> bounced_;
    std::exception_ptr error_;
    bool stop_ = false;
    std::atomic<std::uint64_t> finished_{0};  // files the worker is done with (written or not)
    std::atomic<bool> trouble_{false};        // bounced_ or error_ is set
    std::thread worker_;
};

}  // namespace ocibuild::layer::detail
