#include "layer_stream.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "ocibuild/core/error.hpp"

namespace ocibuild::layer::detail {
namespace {

using core::Error;
using core::ErrorCategory;

constexpr std::size_t input_chunk = std::size_t{256} << 10;
constexpr std::size_t output_chunk = std::size_t{1} << 20;
constexpr std::size_t read_ahead_chunks = 4;
constexpr off_t read_ahead_threshold = off_t{4} << 20;  // smaller blobs: no thread

/// Pull-mode decompression of one blob, hashing what comes out.
class Decoder {
public:
    Decoder(int fd, std::string what) : fd_(fd), what_(std::move(what)), in_(input_chunk) {}
    ~Decoder() {
        if (z_init_) inflateEnd(&z_);
        if (zs_ != nullptr) ZSTD_freeDCtx(zs_);
    }
    Decoder(const Decoder&) = delete;
    Decoder& operator=(const Decoder&) = delete;

    /// Up to `cap` plain bytes into `out`; 0 only at the end of the stream. Throws
    /// core::Error(invalid_input) for corrupt or truncated data.
    std::size_t read(char* out, std::size_t cap) {
        if (done_ || cap == 0) return 0;
        if (kind_ == Kind::unknown) detect();
        std::size_t n = 0;
        switch (kind_) {
            case Kind::plain: n = read_plain(out, cap); break;
            case Kind::gzip: n = read_gzip(out, cap); break;
            case Kind::zstd: n = read_zstd(out, cap); break;
            case Kind::unknown: break;
        }
        if (n == 0) done_ = true;
        hash_.update(out, n);
        return n;
    }

    /// The sha256 of everything read() returned; call once, after read() returned 0.
    core::Digest digest() { return hash_.finish(); }

private:
    enum class Kind { unknown, plain, gzip, zstd };

    [[noreturn]] void corrupt(const std::string& message) const {
        throw Error(ErrorCategory::invalid_input, what_ + ": " + message);
    }

    /// Reads more compressed bytes to the end of in_; false at end of file.
    bool refill() {
        if (in_pos_ == in_end_) in_pos_ = in_end_ = 0;
        if (in_end_ == in_.size()) return true;
        for (;;) {
            const ssize_t n = ::read(fd_, in_.data() + in_end_, in_.size() - in_end_);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) core::throw_errno(what_ + ": reading");
            if (n == 0) eof_ = true;
            in_end_ += static_cast<std::size_t>(n);
            return n > 0;
        }
    }

    void detect() {
        while (in_end_ < 4 && !eof_) refill();
        const auto* p = in_.data();
        if (in_end_ >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
            kind_ = Kind::gzip;
            if (inflateInit2(&z_, 15 + 32) != Z_OK) throw Error(ErrorCategory::internal, "cannot start zlib");
            z_init_ = true;
        } else if (in_end_ >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) {
            kind_ = Kind::zstd;
            zs_ = ZSTD_createDCtx();
            if (zs_ == nullptr) throw Error(ErrorCategory::internal, "cannot start zstd");
        } else {
            kind_ = Kind::plain;
        }
    }

    std::size_t read_plain(char* out, std::size_t cap) {
        if (in_pos_ < in_end_) {  // what detect() looked at
            const std::size_t n = std::min(cap, in_end_ - in_pos_);
            std::memcpy(out, in_.data() + in_pos_, n);
            in_pos_ += n;
            return n;
        }
        for (;;) {
            const ssize_t n = ::read(fd_, out, cap);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) core::throw_errno(what_ + ": reading");
            return static_cast<std::size_t>(n);
        }
    }

    std::size_t read_gzip(char* out, std::size_t cap) {
        for (;;) {
            if (in_pos_ == in_end_ && !eof_) refill();
            if (member_done_) {
                if (in_pos_ == in_end_ && eof_) return 0;
                inflateReset(&z_);  // another gzip member follows (pigz, concatenated streams)
                member_done_ = false;
            }
            z_.next_in = in_.data() + in_pos_;
            z_.avail_in = static_cast<uInt>(in_end_ - in_pos_);
            z_.next_out = reinterpret_cast<Bytef*>(out);
            z_.avail_out = static_cast<uInt>(cap);
            const int rc = inflate(&z_, Z_NO_FLUSH);
            in_pos_ = in_end_ - z_.avail_in;
            const std::size_t produced = cap - z_.avail_out;
            if (rc == Z_STREAM_END) {
                member_done_ = true;
            } else if (rc == Z_BUF_ERROR) {
                if (produced == 0 && in_pos_ == in_end_ && eof_) corrupt("truncated gzip stream");
            } else if (rc != Z_OK) {
                corrupt(std::string("corrupt gzip stream: ") + (z_.msg != nullptr ? z_.msg : zError(rc)));
            }
            if (produced > 0) return produced;
        }
    }

    std::size_t read_zstd(char* out, std::size_t cap) {
        for (;;) {
            if (in_pos_ == in_end_ && !eof_) refill();
            ZSTD_inBuffer ib{in_.data(), in_end_, in_pos_};
            ZSTD_outBuffer ob{out, cap, 0};
            const std::size_t rc = ZSTD_decompressStream(zs_, &ob, &ib);
            if (ZSTD_isError(rc)) corrupt(std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc));
            // 0 means a frame ended and was flushed; remember it only from calls that did work (an
            // idle call after a complete frame asks for the next frame's header instead).
            if (ob.pos > 0 || ib.pos != in_pos_) zs_frame_done_ = rc == 0;
            in_pos_ = ib.pos;
            if (ob.pos > 0) return ob.pos;
            if (in_pos_ == in_end_ && eof_) {
                if (!zs_frame_done_) corrupt("truncated zstd stream");
                return 0;
            }
        }
    }

    int fd_;
    std::string what_;
    std::vector<unsigned char> in_;
    std::size_t in_pos_ = 0;
    std::size_t in_end_ = 0;
    bool eof_ = false;
    bool done_ = false;
    Kind kind_ = Kind::unknown;
    z_stream z_{};
    bool z_init_ = false;
    bool member_done_ = false;
    ZSTD_DCtx* zs_ = nullptr;
    bool zs_frame_done_ = false;
    core::Sha256 hash_;
};

class DirectSource final : public PlainSource {
public:
    DirectSource(int fd, std::string what) : decoder_(fd, std::move(what)), buffer_(new char[output_chunk]) {}
    std::span<const char> next() override {
        return {buffer_.get(), decoder_.read(buffer_.get(), output_chunk)};
    }
    core::Digest finish() override {
        while (!next().empty()) {
        }
        return decoder_.digest();
    }

private:
    Decoder decoder_;
    std::unique_ptr<char[]> buffer_;
};

/// Decompresses on a thread of its own, up to read_ahead_chunks chunks ahead of the consumer.
class ReadAheadSource final : public PlainSource {
public:
    ReadAheadSource(int fd, std::string what) : decoder_(fd, std::move(what)) {
        for (std::size_t i = 0; i < read_ahead_chunks; ++i) {
            buffers_.emplace_back(new char[output_chunk]);
            free_.push_back(i);
        }
        thread_ = std::thread([this] { produce(); });
    }
    ~ReadAheadSource() override {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    ReadAheadSource(const ReadAheadSource&) = delete;
    ReadAheadSource& operator=(const ReadAheadSource&) = delete;

    std::span<const char> next() override {
        std::unique_lock lock(mutex_);
        if (current_) {
            free_.push_back(*current_);
            current_.reset();
            cv_.notify_all();
        }
        cv_.wait(lock, [&] { return !full_.empty() || finished_; });
        if (!full_.empty()) {
            const auto [index, size] = full_.front();
            full_.pop_front();
            current_ = index;
            return {buffers_[index].get(), size};
        }
        if (error_) std::rethrow_exception(error_);
        return {};
    }

    core::Digest finish() override {
        while (!next().empty()) {
        }
        thread_.join();
        return digest_;
    }

private:
    void produce() {
        for (;;) {
            std::size_t index = 0;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return !free_.empty() || stop_; });
                if (stop_) return;
                index = free_.front();
                free_.pop_front();
            }
            std::size_t size = 0;
            bool end = false;
            std::exception_ptr error;
            try {
                while (size < output_chunk) {
                    const std::size_t n = decoder_.read(buffers_[index].get() + size, output_chunk - size);
                    if (n == 0) {
                        end = true;
                        break;
                    }
                    size += n;
                }
                if (end) digest_ = decoder_.digest();
            } catch (...) {
                error = std::current_exception();
            }
            {
                std::lock_guard lock(mutex_);
                if (size > 0) full_.emplace_back(index, size);
                else free_.push_back(index);
                if (error) error_ = error;
                if (end || error) finished_ = true;
            }
            cv_.notify_all();
            if (end || error) return;
        }
    }

    Decoder decoder_;
    std::vector<std::unique_ptr<char[]>> buffers_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::size_t> free_;
    std::deque<std::pair<std::size_t, std::size_t>> full_;
    std::optional<std::size_t> current_;
    bool finished_ = false;
    bool stop_ = false;
    std::exception_ptr error_;
    core::Digest digest_;
    std::thread thread_;
};

}  // namespace

std::unique_ptr<PlainSource> open_plain_source(int fd, const std::string& what) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size - ::lseek(fd, 0, SEEK_CUR) > read_ahead_threshold)
        return std::make_unique<ReadAheadSource>(fd, what);
    return std::make_unique<DirectSource>(fd, what);
}

}  // namespace ocibuild::layer::detail
