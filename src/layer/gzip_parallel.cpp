#include "gzip_parallel.hpp"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ocibuild/core/error.hpp"

namespace ocibuild::layer::gzip {
namespace {

/// Deflate's window: each block is primed with this much of the input before it.
constexpr std::size_t window_size = 32 * 1024;

/// ISA-L's token buffer, in tokens. ISA-L ends a deflate block (and builds new Huffman codes) each
/// time it fills, so the size changes the bytes. 4096 was the best ratio of 1K..16K on the bench
/// tree (and within 0.1% of the best on a tar of /usr/bin + /usr/include) at 15-25% less speed
/// than 16K (docs/benchmarks.md).
constexpr std::uint32_t isal_tokens = 4096;

/// Jobs submitted and not yet written out, per worker thread: enough to keep every worker busy
/// while the caller writes finished blocks, and the bound on memory (a job is ~0.6 MB).
constexpr std::size_t jobs_per_thread = 2;

/// More workers than this cannot be fed by the one thread that writes the tar (~0.7 GB/s with its
/// sha256; ISA-L runs ~0.5 GB/s and zlib -6 ~45 MB/s per thread), so a bigger `threads` (a
/// 192-core host's hardware concurrency) only costs memory. The bytes do not depend on it.
constexpr int max_threads = 32;

[[noreturn]] void fail(std::string message) { throw core::Error(core::ErrorCategory::internal, std::move(message)); }

/// One block: its dictionary and input, then its deflate bytes and CRC.
struct Job {
    std::vector<unsigned char> data;  // dict_len bytes of dictionary, then the block
    std::size_t dict_len = 0;
    bool last = false;
    std::vector<unsigned char> out;
    std::uint32_t crc = 0;
    bool done = false;  // under ParallelGzip::mutex_ once submitted to the workers
    std::exception_ptr error;

    [[nodiscard]] std::size_t block_len() const { return data.size() - dict_len; }
    [[nodiscard]] unsigned char* block() { return data.data() + dict_len; }
};

class Deflater {
public:
    virtual ~Deflater() = default;
    /// Fills job.out with the raw deflate bytes of job's block.
    virtual void run(Job& job) = 0;
};

/// ISA-L igzip, levels 1 and 2. Stateful isal_deflate on one block: SYNC_FLUSH for all but the
/// last block, end_of_stream for the last.
class IsalDeflater final : public Deflater {
public:
    explicit IsalDeflater(int level)
        : level_(static_cast<std::uint32_t>(level)),
          level_buf_(level == 1 ? ISAL_DEF_LVL1_REQ + ISAL_DEF_LVL1_TOKEN_SIZE * isal_tokens
                                : ISAL_DEF_LVL2_REQ + ISAL_DEF_LVL2_TOKEN_SIZE * isal_tokens) {}

    void run(Job& job) override {
        isal_zstream s;
        isal_deflate_init(&s);
        s.level = level_;
        s.level_buf = level_buf_.data();
        s.level_buf_size = static_cast<std::uint32_t>(level_buf_.size());
        s.gzip_flag = IGZIP_DEFLATE;  // raw deflate: the gzip header and trailer are ours
        s.hist_bits = 0;              // default: the full 32 KiB window
        s.flush = job.last ? NO_FLUSH : SYNC_FLUSH;
        s.end_of_stream = job.last ? 1 : 0;
        if (job.dict_len > 0 &&
            isal_deflate_set_dict(&s, job.data.data(), static_cast<std::uint32_t>(job.dict_len)) != COMP_OK) {
            fail("gzip compression: cannot set the dictionary");
        }
        s.next_in = job.block();
        s.avail_in = static_cast<std::uint32_t>(job.block_len());
        // Stored blocks are the worst case: 5 bytes per 64 KiB plus the block headers.
        job.out.resize(job.block_len() + job.block_len() / 16 + 4096);
        std::size_t produced = 0;
        for (;;) {
            s.next_out = job.out.data() + produced;
            s.avail_out = static_cast<std::uint32_t>(job.out.size() - produced);
            if (isal_deflate(&s) != COMP_OK) fail("gzip compression failed");
            produced = job.out.size() - s.avail_out;
            const bool flushed = s.avail_in == 0 && s.avail_out > 0;
            if (flushed && (!job.last || s.internal_state.state == ZSTATE_END)) break;
            job.out.resize(job.out.size() * 2);  // never seen; ISA-L resumes where it stopped
        }
        job.out.resize(produced);
    }

private:
    std::uint32_t level_;
    std::vector<std::uint8_t> level_buf_;
};

/// zlib, levels 3..9: raw deflate, reset for each block, Z_SYNC_FLUSH / Z_FINISH.
class ZlibDeflater final : public Deflater {
public:
    explicit ZlibDeflater(int level) {
        if (deflateInit2(&z_, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            fail("cannot initialise gzip compression");
        }
    }
    ~ZlibDeflater() override { deflateEnd(&z_); }
    ZlibDeflater(const ZlibDeflater&) = delete;
    ZlibDeflater& operator=(const ZlibDeflater&) = delete;

    void run(Job& job) override {
        if (deflateReset(&z_) != Z_OK) fail("gzip compression: reset failed");
        if (job.dict_len > 0 && deflateSetDictionary(&z_, job.data.data(), static_cast<uInt>(job.dict_len)) != Z_OK) {
            fail("gzip compression: cannot set the dictionary");
        }
        const int flush = job.last ? Z_FINISH : Z_SYNC_FLUSH;
        z_.next_in = job.block();
        z_.avail_in = static_cast<uInt>(job.block_len());
        job.out.resize(deflateBound(&z_, job.block_len()) + 16);  // + the sync flush's empty block
        std::size_t produced = 0;
        for (;;) {
            z_.next_out = job.out.data() + produced;
            z_.avail_out = static_cast<uInt>(job.out.size() - produced);
            const int rc = deflate(&z_, flush);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) fail("gzip compression failed");
            produced = job.out.size() - z_.avail_out;
            if (job.last ? rc == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out > 0)) break;
            job.out.resize(job.out.size() * 2);
        }
        job.out.resize(produced);
    }

private:
    z_stream z_{};
};

std::unique_ptr<Deflater> make_deflater(int level) {
    if (level <= 2) return std::make_unique<IsalDeflater>(level);
    return std::make_unique<ZlibDeflater>(level);
}

void compress(Deflater& deflater, Job& job) {
    job.crc = crc32_gzip_refl(0, job.block(), job.block_len());
    deflater.run(job);
}

class ParallelGzip final : public core::ByteSink {
public:
    ParallelGzip(int level, int threads, core::ByteSink& next)
        : next_(next),
          level_(level),
          threads_(threads),
          max_in_flight_(jobs_per_thread * static_cast<std::size_t>(threads) + 1),
          caller_deflater_(make_deflater(level)) {}

    ~ParallelGzip() override {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
            queue_.clear();
        }
        work_cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    ParallelGzip(const ParallelGzip&) = delete;
    ParallelGzip& operator=(const ParallelGzip&) = delete;

    void write(const void* data, std::size_t size) override {
        const auto* p = static_cast<const unsigned char*>(data);
        while (size > 0) {
            if (!current_) start_job();
            if (current_->block_len() == block_size) {
                submit(false);  // a full block followed by more input
                continue;
            }
            const std::size_t take = std::min(size, block_size - current_->block_len());
            current_->data.insert(current_->data.end(), p, p + take);
            p += take;
            size -= take;
        }
    }

    void finish() override {
        if (!current_) start_job();  // no input at all: one empty last block
        submit(true);
        drain(true);
        unsigned char trailer[8];
        put_le32(trailer, crc_);
        put_le32(trailer + 4, static_cast<std::uint32_t>(total_in_));  // ISIZE: the size mod 2^32
        next_.write(trailer, sizeof trailer);
        next_.finish();
    }

private:
    static void put_le32(unsigned char* p, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
    }

    void start_job() {
        if (free_.empty()) {
            current_ = std::make_unique<Job>();
            current_->data.reserve(window_size + block_size);
        } else {
            current_ = std::move(free_.back());
            free_.pop_back();
        }
        current_->data.assign(dict_.begin(), dict_.end());
        current_->dict_len = dict_.size();
        current_->out.clear();
        current_->done = false;
        current_->error = nullptr;
    }

    void submit(bool last) {
        Job* job = current_.get();
        job->last = last;
        // The next block's dictionary: the last 32 KiB of the input so far.
        const std::size_t keep = std::min(window_size, job->data.size());
        dict_.assign(job->data.end() - static_cast<std::ptrdiff_t>(keep), job->data.end());
        in_flight_.push_back(std::move(current_));
        // One thread, or a whole stream that fits one block: compress here, start no thread.
        if (threads_ == 1 || (last && in_flight_.size() == 1)) {
            compress(*caller_deflater_, *job);
            job->done = true;
        } else {
            if (workers_.empty()) {
                for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { work(); });
            }
            {
                std::lock_guard lock(mutex_);
                queue_.push_back(job);
            }
            work_cv_.notify_one();
        }
        drain(false);
    }

    /// Writes out finished blocks in order. Waits for the oldest one while too many are in flight
    /// (or, with `all`, until every block is written).
    void drain(bool all) {
        while (!in_flight_.empty()) {
            Job& front = *in_flight_.front();
            {
                std::unique_lock lock(mutex_);
                if (!front.done) {
                    if (!all && in_flight_.size() < max_in_flight_) return;
                    done_cv_.wait(lock, [&] { return front.done; });
                }
            }
            emit(front);
            free_.push_back(std::move(in_flight_.front()));
            in_flight_.pop_front();
        }
    }

    void emit(Job& job) {
        if (job.error) std::rethrow_exception(job.error);
        if (!header_written_) {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=255 (unknown, as Go writes it). XFL as zlib
            // sets it: 4 (fastest) for level 1, 2 (best) for level 9, else 0.
            const unsigned char xfl = level_ == 1 ? 4 : level_ == 9 ? 2 : 0;
            const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff};
            next_.write(header, sizeof header);
            header_written_ = true;
        }
        if (!job.out.empty()) next_.write(job.out.data(), job.out.size());
        const std::size_t n = job.block_len();
        crc_ = static_cast<std::uint32_t>(crc32_combine(crc_, job.crc, static_cast<z_off_t>(n)));
        total_in_ += n;
    }

    void work() {
        std::unique_ptr<Deflater> deflater;
        for (;;) {
            Job* job = nullptr;
            {
                std::unique_lock lock(mutex_);
                work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
                if (stop_) return;
                job = queue_.front();
                queue_.pop_front();
            }
            try {
                if (!deflater) deflater = make_deflater(level_);
                compress(*deflater, *job);
            } catch (...) {
                job->error = std::current_exception();
            }
            {
                std::lock_guard lock(mutex_);
                job->done = true;
            }
            done_cv_.notify_one();  // only the caller waits on it
        }
    }

    core::ByteSink& next_;
    const int level_;
    const int threads_;
    const std::size_t max_in_flight_;
    std::unique_ptr<Deflater> caller_deflater_;

    // The caller's thread only.
    std::unique_ptr<Job> current_;                 // being filled
    std::deque<std::unique_ptr<Job>> in_flight_;  // submitted, in stream order
    std::vector<std::unique_ptr<Job>> free_;       // written out, for reuse
    std::vector<unsigned char> dict_;
    std::uint32_t crc_ = 0;
    std::uint64_t total_in_ = 0;
    bool header_written_ = false;

    // Shared with the workers.
    std::mutex mutex_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    std::deque<Job*> queue_;
    bool stop_ = false;
    std::vector<std::thread> workers_;  // last: joined (in the destructor) before the rest goes
};

}  // namespace

std::unique_ptr<core::ByteSink> make_parallel_compressor(int level, int threads, core::ByteSink& next) {
    return std::make_unique<ParallelGzip>(level, std::clamp(threads, 1, max_threads), next);
}

}  // namespace ocibuild::layer::gzip
