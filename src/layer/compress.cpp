#include "ocibuild/layer/compress.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gzip_parallel.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::layer {
namespace {

constexpr std::size_t out_buffer_size = 256 * 1024;
constexpr int zstd_default_level = 3;

[[noreturn]] void fail(core::ErrorCategory category, std::string message) {
    throw core::Error(category, std::move(message));
}

/// zlib's avail_in is 32-bit: feed large writes in slices.
constexpr std::size_t max_zlib_slice = std::size_t{1} << 30;

// ---- gzip ----
// Compression: gzip_parallel.hpp (pigz-style blocks, ISA-L or zlib by level, any thread count gives
// the same bytes).

class GzipDecompressor final : public core::ByteSink {
public:
    explicit GzipDecompressor(core::ByteSink& next) : next_(next), out_(out_buffer_size) {
        if (inflateInit2(&z_, 15 + 32) != Z_OK) fail(core::ErrorCategory::internal, "cannot initialise gzip decompression");
    }
    ~GzipDecompressor() override { inflateEnd(&z_); }
    GzipDecompressor(const GzipDecompressor&) = delete;
    GzipDecompressor& operator=(const GzipDecompressor&) = delete;

    void write(const void* data, std::size_t size) override {
        const auto* p = static_cast<const unsigned char*>(data);
        while (size > 0) {
            const std::size_t slice = std::min(size, max_zlib_slice);
            z_.next_in = const_cast<unsigned char*>(p);
            z_.avail_in = static_cast<uInt>(slice);
            run();
            p += slice;
            size -= slice;
        }
    }

    void finish() override {
        if (!at_member_end_) fail(core::ErrorCategory::invalid_input, "truncated gzip stream");
        next_.finish();
    }

private:
    void run() {
        while (z_.avail_in > 0) {
            if (at_member_end_) {
                // Concatenated members (as pigz and Go's multistream reader allow).
                if (inflateReset(&z_) != Z_OK) fail(core::ErrorCategory::internal, "gzip reset failed");
                at_member_end_ = false;
            }
            z_.next_out = out_.data();
            z_.avail_out = static_cast<uInt>(out_.size());
            const int rc = inflate(&z_, Z_NO_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
                fail(core::ErrorCategory::invalid_input,
                     std::string("corrupt gzip stream: ") + (z_.msg != nullptr ? z_.msg : "inflate error"));
            }
            const std::size_t produced = out_.size() - z_.avail_out;
            if (produced > 0) next_.write(out_.data(), produced);
            if (rc == Z_STREAM_END) at_member_end_ = true;
            if (rc == Z_BUF_ERROR && produced == 0) break;
        }
    }

    core::ByteSink& next_;
    std::vector<unsigned char> out_;
    z_stream z_{};
    bool at_member_end_ = false;
};

// ---- zstd ----

struct CCtxFree {
    void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
    void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

void zstd_check(std::size_t rc, const char* what) {
    if (ZSTD_isError(rc)) fail(core::ErrorCategory::internal, std::string(what) + ": " + ZSTD_getErrorName(rc));
}

class ZstdCompressor final : public core::ByteSink {
public:
    ZstdCompressor(int level, int threads, core::ByteSink& next)
        : next_(next), cctx_(ZSTD_createCCtx()), out_(ZSTD_CStreamOutSize()) {
        if (!cctx_) fail(core::ErrorCategory::internal, "cannot allocate a zstd context");
        zstd_check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, level), "zstd level");
        zstd_check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 0), "zstd checksum flag");
        zstd_check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_contentSizeFlag, 0), "zstd content size flag");
        // Always at least one worker. Measured with libzstd 1.5.4 (tests/unit/layer/compress_test.cpp):
        // nbWorkers = 1, 2, 4 give identical bytes, but nbWorkers = 0 (single-threaded mode) gives
        // different ones. So the output depends on the thread count only through 0 vs ≥1, which we
        // never mix.
        zstd_check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_nbWorkers, std::max(threads, 1)), "zstd workers");
    }

    void write(const void* data, std::size_t size) override {
        ZSTD_inBuffer in{data, size, 0};
        while (in.pos < in.size) {  // with workers, one call may not take all the input
            ZSTD_outBuffer out{out_.data(), out_.size(), 0};
            zstd_check(ZSTD_compressStream2(cctx_.get(), &out, &in, ZSTD_e_continue), "zstd compression");
            if (out.pos > 0) next_.write(out_.data(), out.pos);
        }
    }

    void finish() override {
        ZSTD_inBuffer in{nullptr, 0, 0};
        for (;;) {
            ZSTD_outBuffer out{out_.data(), out_.size(), 0};
            const std::size_t left = ZSTD_compressStream2(cctx_.get(), &out, &in, ZSTD_e_end);
            zstd_check(left, "zstd compression");
            if (out.pos > 0) next_.write(out_.data(), out.pos);
            if (left == 0) break;
        }
        next_.finish();
    }

private:
    core::ByteSink& next_;
    std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx_;
    std::vector<char> out_;
};

class ZstdDecompressor final : public core::ByteSink {
public:
    explicit ZstdDecompressor(core::ByteSink& next)
        : next_(next), dctx_(ZSTD_createDCtx()), out_(ZSTD_DStreamOutSize()) {
        if (!dctx_) fail(core::ErrorCategory::internal, "cannot allocate a zstd context");
    }

    void write(const void* data, std::size_t size) override {
        if (size == 0) return;  // an empty call would reset frame_done_
        ZSTD_inBuffer in{data, size, 0};
        std::size_t consumed = 0;
        for (;;) {
            ZSTD_outBuffer out{out_.data(), out_.size(), 0};
            const std::size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in);
            if (ZSTD_isError(rc)) {
                fail(core::ErrorCategory::invalid_input, std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc));
            }
            // 0 = a frame ended and is flushed. A call that did nothing (no input left, the last
            // frame already flushed) returns the size of the next frame's header instead.
            if (in.pos != consumed || out.pos > 0) frame_done_ = rc == 0;
            consumed = in.pos;
            if (out.pos > 0) next_.write(out_.data(), out.pos);
            // Done when all input is taken and the output buffer was not filled (nothing pending).
            if (in.pos == in.size && out.pos < out.size) break;
        }
    }

    void finish() override {
        if (!frame_done_) fail(core::ErrorCategory::invalid_input, "truncated zstd stream");
        next_.finish();
    }

private:
    core::ByteSink& next_;
    std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx_;
    std::vector<char> out_;
    bool frame_done_ = false;
};

// ---- plain ----

class Passthrough final : public core::ByteSink {
public:
    explicit Passthrough(core::ByteSink& next) : next_(next) {}
    void write(const void* data, std::size_t size) override { next_.write(data, size); }
    void finish() override { next_.finish(); }

private:
    core::ByteSink& next_;
};

/// Holds the first bytes until the format is known, then forwards everything to the decoder.
class DetectingDecompressor final : public core::ByteSink {
public:
    explicit DetectingDecompressor(core::ByteSink& next) : next_(next) {}

    void write(const void* data, std::size_t size) override {
        if (inner_) {
            inner_->write(data, size);
            return;
        }
        const auto* p = static_cast<const unsigned char*>(data);
        const std::size_t take = std::min(size, sizeof magic_ - held_);
        std::memcpy(magic_ + held_, p, take);
        held_ += take;
        if (held_ < sizeof magic_) return;
        choose();
        if (size > take) inner_->write(p + take, size - take);
    }

    void finish() override {
        if (!inner_) choose();
        inner_->finish();
    }

private:
    void choose() {
        static constexpr unsigned char gzip_magic[] = {0x1f, 0x8b};
        static constexpr unsigned char zstd_magic[] = {0x28, 0xb5, 0x2f, 0xfd};
        if (held_ >= sizeof gzip_magic && std::memcmp(magic_, gzip_magic, sizeof gzip_magic) == 0) {
            inner_ = std::make_unique<GzipDecompressor>(next_);
        } else if (held_ >= sizeof zstd_magic && std::memcmp(magic_, zstd_magic, sizeof zstd_magic) == 0) {
            inner_ = std::make_unique<ZstdDecompressor>(next_);
        } else {
            inner_ = std::make_unique<Passthrough>(next_);
        }
        if (held_ > 0) inner_->write(magic_, held_);
    }

    core::ByteSink& next_;
    std::unique_ptr<core::ByteSink> inner_;
    unsigned char magic_[4] = {};
    std::size_t held_ = 0;
};

int resolve_threads(int threads) {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace

std::unique_ptr<core::ByteSink> make_compressor(const CompressionOptions& options, core::ByteSink& next) {
    switch (options.kind) {
        case oci::Compression::none: return std::make_unique<Passthrough>(next);
        case oci::Compression::gzip: {
            const int level = options.level == 0 ? gzip::default_level : options.level;
            if (level < 1 || level > 9) {
                fail(core::ErrorCategory::invalid_input, "gzip level must be 1 to 9, not " + std::to_string(level));
            }
            return gzip::make_parallel_compressor(level, resolve_threads(options.threads), next);
        }
        case oci::Compression::zstd: {
            const int level = options.level == 0 ? zstd_default_level : options.level;
            if (level < 1 || level > ZSTD_maxCLevel()) {
                fail(core::ErrorCategory::invalid_input, "zstd level must be 1 to " + std::to_string(ZSTD_maxCLevel()) +
                                                             ", not " + std::to_string(level));
            }
            return std::make_unique<ZstdCompressor>(level, resolve_threads(options.threads), next);
        }
    }
    fail(core::ErrorCategory::internal, "unknown compression kind");
}

std::unique_ptr<core::ByteSink> make_decompressor(core::ByteSink& next) {
    return std::make_unique<DetectingDecompressor>(next);
}

}  // namespace ocibuild::layer
