// Fetching repodata: zst first, then plain JSON, through mirrors; a disk cache revalidated with
// ETag / Last-Modified; file:// channels read in place; channels × subdirs in parallel.
#include "ocibuild/conda/repodata_fetch.hpp"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <zstd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::conda {
namespace {

using core::Error;
using core::ErrorCategory;

constexpr std::string_view kZst = "repodata.json.zst";
constexpr std::string_view kJson = "repodata.json";
// A server without repodata.json.zst is asked again after this long.
constexpr std::int64_t kZstRecheckSeconds = 7 * 24 * 3600;
// Larger than any real repodata (conda-forge linux-64 is ~300 MB); guards against zstd bombs.
constexpr std::uint64_t kMaxJsonBytes = 4ull << 30;

/// A whole file into a string with simdjson's padding spare, so parse() need not copy it.
std::string read_padded(const std::filesystem::path& path) {
    auto fd = core::open_file(path, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) core::throw_errno("cannot stat " + path.string());
    std::string out;
    out.reserve(static_cast<std::size_t>(st.st_size) + simdjson::SIMDJSON_PADDING);
    out.resize(static_cast<std::size_t>(st.st_size));
    out.resize(core::read_full(fd.get(), out.data(), out.size(), path.string()));
    return out;
}

/// Streaming zstd decompression (frames may lack a content size; several frames may follow each
/// other) into a string with simdjson's padding spare.
std::string decompress_zstd(std::string_view in, std::string_view source) {
    constexpr std::size_t kPadding = simdjson::SIMDJSON_PADDING;
    constexpr std::size_t kStep = 8 << 20;  // grow the written part (zero-filled by resize) in steps
    std::string out;
    const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
    const bool known = declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR && declared <= kMaxJsonBytes;
    // Untouched reserved pages cost nothing, so guess high when the frame does not say.
    out.reserve((known ? static_cast<std::size_t>(declared) : in.size() * 10) + kPadding + 1);
    std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!dctx) throw Error(ErrorCategory::internal, "ZSTD_createDCtx failed");
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    std::size_t produced = 0;
    std::size_t last = 1;
    while (true) {
        if (out.capacity() < produced + kPadding + 1) {
            if (out.capacity() >= kMaxJsonBytes)
                throw Error(ErrorCategory::invalid_input, std::string(source) + ": decompresses to more than 4 GiB");
            out.reserve(out.capacity() * 2);
        }
        out.resize(std::min(out.capacity() - kPadding, produced + kStep));
        ZSTD_outBuffer output{out.data(), out.size(), produced};
        last = ZSTD_decompressStream(dctx.get(), &output, &input);
        if (ZSTD_isError(last) != 0)
            throw Error(ErrorCategory::invalid_input, std::string(source) + ": zstd: " + ZSTD_getErrorName(last));
        produced = output.pos;
        if (input.pos == input.size && output.pos < output.size) break;  // all input used, all output flushed
    }
    if (last != 0) throw Error(ErrorCategory::invalid_input, std::string(source) + ": zstd: truncated data");
    out.resize(produced);  // capacity keeps the padding
    return out;
}

std::string body_to_json(std::string body, bool zst, std::string_view source) {
    return zst ? decompress_zstd(body, source) : body;
}

std::int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// One cache entry: <key>.meta.json describes <key>.<file as fetched>.
struct CacheEntry {
    std::string url;        // canonical (non-mirror) repodata.json URL
    std::string file;       // kZst or kJson; empty when the subdir was missing (404)
    std::string etag;
    std::string last_modified;
    std::int64_t zst_missing_since = 0;  // when a server last answered 404 for the .zst
    bool missing = false;
};

class Cache {
public:
    Cache(const std::filesystem::path& dir, const std::string& url) : dir_(dir) {
        if (!dir.empty()) key_ = core::Digest::of(url).hex();
    }
    [[nodiscard]] bool enabled() const { return !dir_.empty(); }
    [[nodiscard]] std::filesystem::path meta_path() const { return dir_ / (key_ + ".meta.json"); }
    [[nodiscard]] std::filesystem::path body_path(std::string_view file) const {
        return dir_ / (key_ + "." + std::string(file));
    }

    [[nodiscard]] std::optional<CacheEntry> load() const {
        if (!enabled()) return std::nullopt;
        std::error_code ec;
        if (!std::filesystem::exists(meta_path(), ec)) return std::nullopt;
        try {
            const auto j = nlohmann::json::parse(core::read_file(meta_path(), 1 << 20));
            CacheEntry e;
            e.url = j.value("url", "");
            e.file = j.value("file", "");
            e.etag = j.value("etag", "");
            e.last_modified = j.value("last_modified", "");
            e.zst_missing_since = j.value("zst_missing_since", std::int64_t{0});
            e.missing = j.value("missing", false);
            if (!e.missing && (e.file != kZst && e.file != kJson)) return std::nullopt;
            if (!e.missing && !std::filesystem::exists(body_path(e.file), ec)) return std::nullopt;
            return e;
        } catch (const std::exception&) {
            return std::nullopt;  // a damaged entry is refetched
        }
    }

    void store(const CacheEntry& e) const {
        nlohmann::json j = {{"url", redact_url(e.url)},  // for people reading the cache; never credentials
                            {"file", e.file},
                            {"etag", e.etag},
                            {"last_modified", e.last_modified},
                            {"zst_missing_since", e.zst_missing_since},
                            {"missing", e.missing}};
        core::write_file_atomic(meta_path(), j.dump(2) + "\n");
        // The other format's body, if any, is stale now.
        for (std::string_view file : {kZst, kJson}) {
            if (file == e.file) continue;
            std::error_code ec;
            std::filesystem::remove(body_path(file), ec);
        }
    }

    /// Drops the entry: data that did not parse must be fetched again, not revalidated (a 304
    /// would keep a corrupt copy forever).
    void forget() const {
        if (!enabled()) return;
        std::error_code ec;
        std::filesystem::remove(meta_path(), ec);
        for (std::string_view file : {kZst, kJson}) std::filesystem::remove(body_path(file), ec);
    }

private:
    std::filesystem::path dir_;
    std::string key_;
};

/// Where a 2xx body goes: the cache file (atomically, once complete), or memory without a cache.
class BodySink : public core::ByteSink {
public:
    explicit BodySink(std::optional<std::filesystem::path> file) {
        if (file) file_.emplace(*file);
    }
    void write(const void* data, std::size_t size) override {
        if (file_) file_->write(data, size);
        else memory_.append(static_cast<const char*>(data), size);
    }
    /// The body; commits the cache file.
    std::string take(const std::optional<std::filesystem::path>& path) {
        if (!file_) return std::move(memory_);
        file_->commit();
        return read_padded(*path);
    }

private:
    std::optional<core::AtomicFile> file_;
    std::string memory_;
};

struct Fetched {
    registry::HttpResponse response;
    std::string body;  // 2xx only
};

class Loader {
public:
    Loader(const Channel& channel, std::string_view subdir, const FetchOptions& options)
        : channel_(channel), subdir_(subdir), options_(options), subdir_url_(channel.subdir_url(subdir)),
          label_(redact_url(channel.name) + "/" + std::string(subdir)) {}

    RepoData load() {
        if (subdir_url_.starts_with("file://")) return load_file();
        if (!subdir_url_.starts_with("http://") && !subdir_url_.starts_with("https://"))
            throw Error(ErrorCategory::unsupported, "channel " + redact_url(channel_.name) + ": cannot fetch " + redact_url(subdir_url_));
        return load_http();
    }

private:
    void log(const std::string& what) const {
        if (options_.log) options_.log("repodata: " + label_ + " (" + what + ")");
    }

    RepoData parse(std::string json, std::string_view source) const {
        return RepoData::parse(std::move(json), subdir_url_, channel_.url, source);
    }

    RepoData missing(std::string_view url, std::string_view why) const {
        if (subdir_ == "noarch")
            throw Error(ErrorCategory::not_found, "channel " + redact_url(channel_.name) + " not found: " + redact_url(url) + ": " + std::string(why));
        return parse("{}", redact_url(url));
    }

    RepoData load_file() {
        const std::filesystem::path dir = file_url_to_path(subdir_url_, "channel " + channel_.name);
        for (std::string_view file : {kZst, kJson}) {
            const std::filesystem::path path = dir / file;
            std::error_code ec;
            if (!std::filesystem::exists(path, ec)) continue;
            log("file");
            return parse(body_to_json(read_padded(path), file == kZst, path.string()), path.string());
        }
        log("none");
        return missing(subdir_url_ + std::string(kJson), "no such file (nor repodata.json.zst)");
    }

    RepoData from_cache(const Cache& cache, const CacheEntry& entry, std::string_view why) const {
        log(std::string(why) + ", cached");
        const std::string url = subdir_url_ + entry.file;
        if (entry.missing) return missing(url, "HTTP 404");
        const auto path = cache.body_path(entry.file);
        const std::string source = redact_url(url) + " (cached as " + path.string() + ")";
        try {
            return parse(body_to_json(read_padded(path), entry.file == kZst, source), source);
        } catch (const Error&) {
            cache.forget();
            throw;
        }
    }

    RepoData load_http() {
        const std::string canonical = subdir_url_ + std::string(kJson);
        const Cache cache(options_.cache_dir, canonical);
        if (cache.enabled() && !options_.offline) {
            std::error_code ec;
            std::filesystem::create_directories(options_.cache_dir, ec);
            if (ec) throw Error(ErrorCategory::unavailable, "cannot create cache folder " + options_.cache_dir.string() + ": " + ec.message());
        }
        std::optional<CacheEntry> cached = cache.load();
        if (options_.offline) {
            if (!cached)
                throw Error(ErrorCategory::not_found, "repodata of " + label_ + " is not cached (offline): " + redact_url(canonical));
            return from_cache(cache, *cached, "offline");
        }
        if (options_.http == nullptr)
            throw Error(ErrorCategory::internal, "fetching " + redact_url(canonical) + ": no HTTP client");

        std::vector<std::string_view> files{kZst, kJson};
        if (cached && cached->zst_missing_since > 0 && now_seconds() - cached->zst_missing_since < kZstRecheckSeconds)
            files.erase(files.begin());
        CacheEntry entry;
        entry.url = canonical;
        entry.zst_missing_since = cached ? cached->zst_missing_since : 0;
        for (std::string_view file : files) {
            const std::string url = subdir_url_ + std::string(file);
            const bool revalidate = cached && !cached->missing && cached->file == file;
            Fetched got = get(url, revalidate ? &*cached : nullptr, cache.enabled() ? std::optional(cache.body_path(file)) : std::nullopt);
            const long status = got.response.status;
            if (status == 304 && revalidate) {
                if (cached->zst_missing_since != entry.zst_missing_since) {
                    cached->zst_missing_since = entry.zst_missing_since;
                    cache.store(*cached);
                }
                return from_cache(cache, *cached, "304");
            }
            if (status == 404) {
                if (file == kZst) entry.zst_missing_since = now_seconds();
                continue;
            }
            if (status >= 200 && status < 300) {
                entry.file = std::string(file);
                entry.etag = got.response.header("etag").value_or("");
                entry.last_modified = got.response.header("last-modified").value_or("");
                if (file == kZst) entry.zst_missing_since = 0;
                if (cache.enabled()) cache.store(entry);
                log(std::to_string(status) + ", " + std::to_string(got.body.size()) + " bytes" + (file == kZst ? " zst" : ""));
                try {
                    return parse(body_to_json(std::move(got.body), file == kZst, redact_url(url)), redact_url(url));
                } catch (const Error&) {
                    cache.forget();
                    throw;
                }
            }
            const ErrorCategory category =
                status == 401 || status == 403 ? ErrorCategory::unauthorized : ErrorCategory::unavailable;
            throw Error(category, "fetching " + redact_url(url) + ": HTTP " + std::to_string(status));
        }
        log("404, none");
        entry.missing = true;
        entry.file.clear();
        if (cache.enabled()) cache.store(entry);
        return missing(canonical, "HTTP 404");
    }

    /// GET through the mirrors: a transport error or 5xx moves on to the next candidate.
    Fetched get(const std::string& url, const CacheEntry* revalidate, const std::optional<std::filesystem::path>& body_path) const {
        const std::vector<std::string> candidates = mirror_urls(url, options_.channels);
        std::string failures;
        for (const std::string& candidate : candidates) {
            registry::HttpRequest request;
            request.url = candidate;
            request.tls = options_.tls;
            if (revalidate != nullptr) {
                if (!revalidate->etag.empty()) request.headers.emplace_back("If-None-Match", revalidate->etag);
                if (!revalidate->last_modified.empty())
                    request.headers.emplace_back("If-Modified-Since", revalidate->last_modified);
            }
            BodySink sink(body_path);
            request.response_sink = &sink;
            try {
                Fetched out;
                out.response = options_.http->perform(request);
                if (out.response.status >= 500) {
                    failures += "; " + redact_url(candidate) + ": HTTP " + std::to_string(out.response.status);
                    continue;
                }
                if (out.response.status >= 200 && out.response.status < 300) out.body = sink.take(body_path);
                return out;
            } catch (const Error& e) {
                if (e.category() != ErrorCategory::unavailable) throw;
                failures += "; " + std::string(e.what());
            }
        }
        throw Error(ErrorCategory::unavailable, "fetching " + redact_url(url) + " failed" +
                                                    (candidates.size() > 1 ? " from every mirror" : "") + failures);
    }

    const Channel& channel_;
    std::string subdir_;
    const FetchOptions& options_;
    std::string subdir_url_;
    std::string label_;
};

}  // namespace

RepoData load_repodata(const Channel& channel, std::string_view subdir, const FetchOptions& options) {
    return Loader(channel, subdir, options).load();
}

std::vector<std::vector<RepoData>> load_channels(const std::vector<Channel>& channels, std::string_view subdir,
                                                 const FetchOptions& options) {
    std::vector<std::string> subdirs{std::string(subdir)};
    if (subdir != "noarch") subdirs.emplace_back("noarch");

    // Log lines from the threads, one at a time.
    std::mutex log_mutex;
    FetchOptions shared = options;
    if (options.log) {
        shared.log = [&](std::string_view line) {
            std::lock_guard lock(log_mutex);
            options.log(line);
        };
    }

    std::vector<std::vector<RepoData>> result(channels.size(), std::vector<RepoData>(subdirs.size()));
    std::vector<std::exception_ptr> errors(channels.size() * subdirs.size());
    std::vector<std::thread> threads;
    threads.reserve(errors.size());
    for (std::size_t c = 0; c < channels.size(); ++c) {
        for (std::size_t s = 0; s < subdirs.size(); ++s) {
            threads.emplace_back([&, c, s] {
                try {
                    result[c][s] = load_repodata(channels[c], subdirs[s], shared);
                } catch (...) {
                    errors[c * subdirs.size() + s] = std::current_exception();
                }
            });
        }
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);  // the highest-priority channel's error first
    return result;
}

}  // namespace ocibuild::conda
