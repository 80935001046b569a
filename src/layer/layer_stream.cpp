#include "layer_stream.hpp"

#include <sys/stat.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
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
constexpr std::size_t output_chunk = ChunkPool::chunk_size;
constexpr std::size_t read_ahead_chunks = 6;
constexpr off_t read_ahead_threshold = off_t{4} << 20;  // smaller blobs: no thread

/// Pull-mode decompression of one blob, hashing what comes out unless told not to, and what goes in
/// when told to (a blob not checked yet, checked as it is read).
class Decoder {
public:
    Decoder(int fd, std::string what, SourceOptions options)
        : fd_(fd), what_(std::move(what)), in_(input_chunk), hash_output_(options.hash_plain) {
        if (options.hash_blob) in_hash_.emplace();
    }
    ~Decoder() {
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
        if (hash_output_) hash_.update(out, n);
        return n;
    }

    /// The sha256 of everything read() returned (when hashing), and the blob as read; call once,
    /// after read() returned 0.
    SourceDigests digests() {
        SourceDigests d{hash_.finish(), {in_bytes_, std::nullopt}};
        if (in_hash_) d.blob.digest = in_hash_->finish();
        return d;
    }

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
            took_in(in_.data() + in_end_, static_cast<std::size_t>(n));
            in_end_ += static_cast<std::size_t>(n);
            return n > 0;
        }
    }

    void detect() {
        while (in_end_ < 4 && !eof_) refill();
        const auto* p = in_.data();
        if (in_end_ >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
            kind_ = Kind::gzip;
            gz_ = std::make_unique<inflate_state>();
            start_gzip_member();
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
            took_in(out, static_cast<std::size_t>(n));
            return static_cast<std::size_t>(n);
        }
    }

    void took_in(const void* data, std::size_t n) {
        in_bytes_ += n;
        if (in_hash_) in_hash_->update(data, n);
    }

    /// The member's header is parsed here (FEXTRA, FNAME, FCOMMENT skipped, FHCRC checked): ISA-L
    /// 2.30's own parsing (ISAL_GZIP) gets the header CRC wrong when the header is split across
    /// calls. The deflate data and the trailer go to isal_inflate with ISAL_GZIP_NO_HDR_VER, which
    /// checks the CRC32 and ISIZE after the data.
    void start_gzip_member() {
        hdr_state_ = Header::fixed;
        hdr_count_ = 0;
        hdr_need_ = 10;
        hdr_crc_ = 0;
        isal_inflate_init(gz_.get());
        gz_->crc_flag = ISAL_GZIP_NO_HDR_VER;
        gz_->hist_bits = 0;  // the full 32 KiB window
    }

    /// Consumes header bytes from in_; true once the header is complete.
    bool parse_gzip_header() {
        while (hdr_state_ != Header::done) {
            if (in_pos_ == in_end_) return false;
            const std::uint8_t c = in_[in_pos_++];
            if (hdr_state_ != Header::hcrc) hdr_crc_ = crc32_gzip_refl(hdr_crc_, &c, 1);
            switch (hdr_state_) {
                case Header::fixed:
                    hdr_fixed_[hdr_count_++] = c;
                    if (hdr_count_ < 10) break;
                    if (hdr_fixed_[0] != 0x1f || hdr_fixed_[1] != 0x8b)
                        corrupt("corrupt gzip stream: incorrect header check");
                    if (hdr_fixed_[2] != 8) corrupt("corrupt gzip stream: unknown compression method");
                    if ((hdr_fixed_[3] & 0xe0) != 0) corrupt("corrupt gzip stream: unknown header flags set");
                    hdr_count_ = 0;
                    next_header_field();
                    break;
                case Header::extra_len:
                    hdr_need_ |= std::uint32_t{c} << (8 * hdr_count_++);
                    if (hdr_count_ == 2) {
                        hdr_count_ = 0;
                        hdr_state_ = Header::extra;
                        if (hdr_need_ == 0) next_header_field();
                    }
                    break;
                case Header::extra:
                    if (++hdr_count_ == hdr_need_) next_header_field();
                    break;
                case Header::name:
                case Header::comment:
                    if (c == 0) next_header_field();
                    break;
                case Header::hcrc:
                    hdr_need_ |= std::uint32_t{c} << (8 * hdr_count_++);
                    if (hdr_count_ == 2) {
                        if (hdr_need_ != (hdr_crc_ & 0xffff)) corrupt("corrupt gzip stream: header crc mismatch");
                        hdr_state_ = Header::done;
                    }
                    break;
                case Header::done: break;
            }
        }
        return true;
    }

    /// Moves on to the first header field still to come after the current one.
    void next_header_field() {
        const std::uint8_t flags = hdr_fixed_[3];
        hdr_count_ = 0;
        hdr_need_ = 0;
        switch (hdr_state_) {
            case Header::fixed:
                if ((flags & 0x04) != 0) {
                    hdr_state_ = Header::extra_len;
                    return;
                }
                [[fallthrough]];
            case Header::extra_len:
            case Header::extra:
                if ((flags & 0x08) != 0) {
                    hdr_state_ = Header::name;
                    return;
                }
                [[fallthrough]];
            case Header::name:
                if ((flags & 0x10) != 0) {
                    hdr_state_ = Header::comment;
                    return;
                }
                [[fallthrough]];
            case Header::comment:
                if ((flags & 0x02) != 0) {
                    hdr_state_ = Header::hcrc;
                    return;
                }
                [[fallthrough]];
            default: hdr_state_ = Header::done;
        }
    }

    static const char* isal_message(int rc) {
        switch (rc) {
            case ISAL_INVALID_BLOCK: return "invalid deflate block";
            case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
            case ISAL_INVALID_LOOKBACK: return "invalid lookback distance";
            case ISAL_INCORRECT_CHECKSUM: return "checksum mismatch (CRC32 or size in the trailer)";
            default: return "inflate failed";
        }
    }

    std::size_t read_gzip(char* out, std::size_t cap) {
        cap = std::min<std::size_t>(cap, std::numeric_limits<std::uint32_t>::max());
        for (;;) {
            if (in_pos_ == in_end_ && !eof_) refill();
            if (member_done_) {
                // Another gzip member follows (pigz, concatenated streams); anything else after a
                // member is an error, as with zlib.
                if (in_pos_ == in_end_ && eof_) return 0;
                start_gzip_member();
                member_done_ = false;
            }
            if (!parse_gzip_header()) {
                if (eof_) corrupt("truncated gzip stream");
                continue;
            }
            gz_->next_in = in_.data() + in_pos_;
            gz_->avail_in = static_cast<std::uint32_t>(in_end_ - in_pos_);
            gz_->next_out = reinterpret_cast<std::uint8_t*>(out);
            gz_->avail_out = static_cast<std::uint32_t>(cap);
            const int rc = isal_inflate(gz_.get());
            in_pos_ = in_end_ - gz_->avail_in;
            const std::size_t produced = cap - gz_->avail_out;
            if (rc < 0 || rc == ISAL_NEED_DICT) corrupt(std::string("corrupt gzip stream: ") + isal_message(rc));
            if (gz_->block_state == ISAL_BLOCK_FINISH) {
                member_done_ = true;
            } else if (produced == 0 && in_pos_ == in_end_ && eof_) {
                corrupt("truncated gzip stream");
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
    std::unique_ptr<inflate_state> gz_;  // ~40 KiB: on the heap
    enum class Header { fixed, extra_len, extra, name, comment, hcrc, done };
    Header hdr_state_ = Header::fixed;
    std::uint8_t hdr_fixed_[10] = {};
    std::uint32_t hdr_count_ = 0;
    std::uint32_t hdr_need_ = 0;
    std::uint32_t hdr_crc_ = 0;
    bool member_done_ = false;
    ZSTD_DCtx* zs_ = nullptr;
    bool zs_frame_done_ = false;
    bool hash_output_;
    core::Sha256 hash_;
    std::uint64_t in_bytes_ = 0;
    std::optional<core::Sha256> in_hash_;
};

class DirectSource final : public PlainSource {
public:
    DirectSource(int fd, std::string what, SourceOptions options)
        : decoder_(fd, std::move(what), options), buffer_(new char[output_chunk]) {}
    std::span<const char> next() override {
        return {buffer_.get(), decoder_.read(buffer_.get(), output_chunk)};
    }
    SourceDigests finish() override {
        while (!next().empty()) {
        }
        return decoder_.digests();
    }

private:
    Decoder decoder_;
    std::unique_ptr<char[]> buffer_;
};

/// Decompresses on a thread of its own, up to a limit of chunks ahead of the consumer, and hashes
/// on another. A chunk is reused once both the consumer and the hasher are done with it. Chunks are
/// allocated as the producer needs them, and freed when the limit drops below what is allocated
/// (a layer decoded ahead with a large limit that becomes the one applied).
class ReadAheadSource final : public PlainSource {
public:
    ReadAheadSource(int fd, std::string what, SourceOptions options)
        : decoder_(fd, std::move(what), {.hash_plain = false, .hash_blob = options.hash_blob}),
          pool_(options.pool ? options.pool : std::make_shared<ChunkPool>()),
          users_per_chunk_(options.hash_plain ? 2 : 1),
          limit_(std::max(read_ahead_chunks, (options.read_ahead + output_chunk - 1) / output_chunk)) {
        buffers_.resize(limit_);
        users_.assign(limit_, 0);
        for (std::size_t i = limit_; i > 0; --i) unallocated_.push_back(i - 1);
        pool_->allow(limit_ + read_ahead_chunks);
        producer_ = std::thread([this] { produce(); });
        if (options.hash_plain) hasher_ = std::thread([this] { hash_chunks(); });
    }
    ~ReadAheadSource() override {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        if (producer_.joinable()) producer_.join();
        if (hasher_.joinable()) hasher_.join();
        for (auto& b : buffers_)
            if (b) pool_->give(std::move(b));
    }
    ReadAheadSource(const ReadAheadSource&) = delete;
    ReadAheadSource& operator=(const ReadAheadSource&) = delete;

    std::span<const char> next() override {
        std::unique_lock lock(mutex_);
        if (current_) {
            release(*current_);
            current_.reset();
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

    SourceDigests finish() override {
        while (!next().empty()) {
        }
        producer_.join();
        if (hasher_.joinable()) hasher_.join();
        return {digest_, decoder_.digests().blob};
    }

    void shrink_read_ahead() override {
        std::lock_guard lock(mutex_);
        limit_ = std::min(limit_, read_ahead_chunks);
        while (allocated_ > limit_ && !free_.empty()) {
            drop(free_.back());
            free_.pop_back();
        }
    }

private:
    /// One user of chunk `index` is done with it (under mutex_).
    void release(std::size_t index) {
        if (--users_[index] > 0) return;
        if (allocated_ > limit_) {
            drop(index);
        } else {
            free_.push_back(index);
        }
        cv_.notify_all();
    }

    /// Gives chunk `index`'s memory back to the pool (under mutex_).
    void drop(std::size_t index) {
        pool_->give(std::move(buffers_[index]));
        unallocated_.push_back(index);
        --allocated_;
    }

    void produce() {
        for (;;) {
            std::size_t index = 0;
            {
                std::unique_lock lock(mutex_);
                for (;;) {
                    cv_.wait(lock, [&] { return !free_.empty() || allocated_ < limit_ || stop_; });
                    if (stop_) return;
                    if (!free_.empty()) {
                        index = free_.front();
                        free_.pop_front();
                        break;
                    }
                    // Beyond the default read-ahead only while the tree's pool has room: the
                    // layer applied may still hold what was decoded ahead for it.
                    if (auto chunk = pool_->take(allocated_ < read_ahead_chunks)) {
                        index = unallocated_.back();
                        unallocated_.pop_back();
                        buffers_[index] = std::move(chunk);
                        ++allocated_;
                        break;
                    }
                    // Chunks come back to the pool from another source's thread, which does not
                    // know this one's condition variable: look again shortly.
                    cv_.wait_for(lock, std::chrono::milliseconds(2));
                }
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
            } catch (...) {
                error = std::current_exception();
            }
            {
                std::lock_guard lock(mutex_);
                if (size > 0) {
                    users_[index] = users_per_chunk_;
                    full_.emplace_back(index, size);
                    if (users_per_chunk_ > 1) to_hash_.emplace_back(index, size);
                } else {
                    free_.push_back(index);
                }
                if (error) error_ = error;
                if (end || error) finished_ = true;
            }
            cv_.notify_all();
            if (end || error) return;
        }
    }

    void hash_chunks() {
        core::Sha256 sha;
        for (;;) {
            std::pair<std::size_t, std::size_t> chunk;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return !to_hash_.empty() || finished_ || stop_; });
                if (to_hash_.empty()) break;  // the stream ended (or failed, or was abandoned)
                chunk = to_hash_.front();
                to_hash_.pop_front();
            }
            sha.update(buffers_[chunk.first].get(), chunk.second);
            std::lock_guard lock(mutex_);
            release(chunk.first);
        }
        std::lock_guard lock(mutex_);
        if (!error_ && !stop_) digest_ = sha.finish();
    }

    Decoder decoder_;
    std::shared_ptr<ChunkPool> pool_;
    std::vector<std::unique_ptr<char[]>> buffers_;
    int users_per_chunk_;     // the consumer, and the hasher if any
    std::vector<int> users_;  // per chunk: how many of them are not done with it yet
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t limit_;          // chunks that may be allocated
    std::size_t allocated_ = 0;  // chunks allocated
    std::deque<std::size_t> free_;         // allocated, unused
    std::vector<std::size_t> unallocated_;  // slots without memory
    std::deque<std::pair<std::size_t, std::size_t>> full_;     // for the consumer
    std::deque<std::pair<std::size_t, std::size_t>> to_hash_;  // for the hasher
    std::optional<std::size_t> current_;
    bool finished_ = false;  // the producer is done (end of stream or error)
    bool stop_ = false;
    std::exception_ptr error_;
    core::Digest digest_;
    std::thread producer_;
    std::thread hasher_;
};

}  // namespace

std::unique_ptr<char[]> ChunkPool::take(bool guaranteed) {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
        auto chunk = std::move(free_.back());
        free_.pop_back();
        return chunk;
    }
    if (!guaranteed && made_ >= size_) return nullptr;
    ++made_;
    return std::unique_ptr<char[]>(new char[chunk_size]);
}

void ChunkPool::allow(std::size_t chunks) {
    std::lock_guard lock(mutex_);
    size_ = std::max(size_, chunks);
}

void ChunkPool::give(std::unique_ptr<char[]> chunk) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(chunk));
}

std::unique_ptr<PlainSource> open_plain_source(int fd, const std::string& what, SourceOptions options) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size - ::lseek(fd, 0, SEEK_CUR) > read_ahead_threshold)
        return std::make_unique<ReadAheadSource>(fd, what, options);
    return std::make_unique<DirectSource>(fd, what, options);
}

}  // namespace ocibuild::layer::detail
