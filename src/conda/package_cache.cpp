#include "package_cache.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "ocibuild/conda/channel.hpp"
#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/sink.hpp"
#include "package_extract.hpp"

namespace ocibuild::conda::detail {
namespace {

namespace fs = std::filesystem;
using core::Error;
using core::ErrorCategory;

// Temporary folders and files older than this whose lock is free are leftovers of dead processes.
constexpr auto stale_after = std::chrono::hours(1);

bool is_dir(const fs::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const fs::path& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void remove_tree(const fs::path& path) noexcept {
    std::error_code ec;
    fs::remove_all(path, ec);
}

/// Removes extractions and downloads left by dead processes. Never fails the build.
void sweep(const fs::path& root) {
    const auto now = fs::file_time_type::clock::now();
    std::error_code ec;
    for (const char* sub : {"tmp", "archives"}) {
        for (fs::directory_iterator it(root / sub, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            std::error_code ec2;
            const auto mtime = fs::last_write_time(it->path(), ec2);
            if (ec2 || now - mtime < stale_after) continue;
            if (std::string_view(sub) == "archives") {
                // AtomicFile's temporaries: ".<key>-<fn>.tmp-<suffix>"; a live download keeps
                // its mtime fresh.
                if (name.starts_with(".") && name.find(".tmp-") != std::string::npos) remove_tree(it->path());
                continue;
            }
            const std::string key = name.substr(0, name.find('.'));
            try {
                const core::FileLock lock(root / "locks" / (key + ".lock"), /*try_only=*/true);
                if (lock.held()) remove_tree(it->path());
            } catch (const Error&) {  // e.g. a read-only cache: leave it
            }
        }
    }
}

class Md5 {
public:
    Md5() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr) != 1)
            throw Error(ErrorCategory::internal, "cannot initialise MD5");
    }
    void update(const void* data, std::size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
    std::string finish() {
        std::array<unsigned char, EVP_MAX_MD_SIZE> raw{};
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_.get(), raw.data(), &len);
        static constexpr char hex[] = "0123456789abcdef";
        std::string out;
        for (unsigned int i = 0; i < len; ++i) {
            out += hex[raw[i] >> 4];
            out += hex[raw[i] & 15];
        }
        return out;
    }

private:
    struct Free {
        void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
    };
    std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

/// Hashes what passes through, and passes it on to a file when one is given.
class HashingSink final : public core::ByteSink {
public:
    explicit HashingSink(core::AtomicFile* file) : file_(file) {}
    void write(const void* data, std::size_t size) override {
        sha256_.update(data, size);
        md5_.update(data, size);
        if (file_ != nullptr) file_->write(data, size);
    }
    /// Lower-case hex of the sha256 and md5 of everything written.
    [[nodiscard]] std::pair<std::string, std::string> finish_hex() {
        return {std::string(sha256_.finish().hex()), md5_.finish()};
    }

private:
    core::AtomicFile* file_;
    core::Sha256 sha256_;
    Md5 md5_;
};

bool is_hex(std::string_view s, std::size_t size) {
    if (s.size() != size) return false;
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

/// The cache key of a record; refuses a record without a usable checksum.
std::string cache_key(const PackageRecord& record, const std::string& what) {
    if (!record.sha256.empty()) {
        if (!is_hex(record.sha256, 64))
            throw Error(ErrorCategory::invalid_input, what + ": malformed sha256 \"" + record.sha256 + "\"");
        return record.sha256;
    }
    if (!record.md5.empty()) {
        if (!is_hex(record.md5, 32))
            throw Error(ErrorCategory::invalid_input, what + ": malformed md5 \"" + record.md5 + "\"");
        return "md5-" + record.md5;
    }
    throw Error(ErrorCategory::integrity, what + " (" + redact_url(record.url) +
                                              "): the channel gives neither a sha256 nor an md5 for it; refusing "
                                              "to install an artifact that cannot be verified");
}

void check_digest(const PackageRecord& record, const std::pair<std::string, std::string>& got, const std::string& url,
                  const std::string& what) {
    const bool by_sha256 = !record.sha256.empty();
    const std::string& expected = by_sha256 ? record.sha256 : record.md5;
    const std::string& actual = by_sha256 ? got.first : got.second;
    if (expected == actual) return;
    const char* algo = by_sha256 ? "sha256" : "md5";
    throw Error(ErrorCategory::integrity,
                what + " (" + redact_url(url) + "): " + algo + " mismatch: expected " + expected + ", got " + actual);
}

std::string file_name_of(const PackageRecord& record) {
    if (!record.fn.empty()) return record.fn;
    const std::size_t slash = record.url.rfind('/');
    return slash == std::string::npos ? record.url : record.url.substr(slash + 1);
}

}  // namespace

std::string describe_package(const PackageRecord& record) { return "package " + record.dist_name(); }

PackageCache::PackageCache(fs::path root, const InstallOptions& options) : root_(std::move(root)), options_(options) {
    for (const char* sub : {"archives", "pkgs", "locks", "tmp"}) {
        std::error_code ec;
        fs::create_directories(root_ / sub, ec);
        if (ec) throw Error(ErrorCategory::internal, "cannot create " + (root_ / sub).string() + ": " + ec.message());
    }
    sweep(root_);
}

fs::path PackageCache::get(const PackageRecord& record) const {
    const std::string what = describe_package(record);
    const std::string key = cache_key(record, what);
    const fs::path final_dir = root_ / "pkgs" / key;
    if (is_dir(final_dir)) return final_dir;

    const core::FileLock lock(root_ / "locks" / (key + ".lock"), /*try_only=*/false);
    if (is_dir(final_dir)) return final_dir;  // extracted while we waited

    const std::string fn = file_name_of(record);
    if (fn.empty() || fn.find('/') != std::string::npos || fn.starts_with(".")) {
        throw Error(ErrorCategory::invalid_input, what + ": bad artifact file name \"" + fn + "\"");
    }
    const fs::path stored = root_ / "archives" / (key + "-" + fn);
    // Extraction reads the very file descriptor that was verified (a file:// artifact swapped
    // after its check is never what gets extracted).
    const core::UniqueFd archive = is_file(stored)
                                       ? core::open_file(stored, O_RDONLY)  // verified before it got this name
                                       : fetch(record, stored, what);

    const fs::path temp = root_ / "tmp" / (key + "." + core::unique_suffix());
    if (::mkdir(temp.c_str(), 0755) != 0) core::throw_errno("cannot create " + temp.string());
    try {
        extract_package(archive.get(), fn, temp.string(), what + " (" + redact_url(record.url) + ")");
        if (::rename(temp.c_str(), final_dir.c_str()) != 0) {
            if ((errno == ENOTEMPTY || errno == EEXIST) && is_dir(final_dir)) {
                remove_tree(temp);  // someone finished it without our lock: identical content
                return final_dir;
            }
            core::throw_errno("cannot rename " + temp.string() + " to " + final_dir.string());
        }
        core::fsync_dir(root_ / "pkgs");
    } catch (...) {
        remove_tree(temp);
        throw;
    }
    return final_dir;
}

core::UniqueFd PackageCache::download(const PackageRecord& record, const std::string& url, const fs::path& stored,
                                      const std::string& what) const {
    constexpr unsigned max_attempts = 3;
    for (unsigned attempt = 1;; ++attempt) {
        bool retryable = false;
        try {
            core::AtomicFile file(stored, 0644);
            HashingSink sink(&file);
            registry::HttpRequest request;
            request.url = url;
            request.tls = options_.tls;
            request.response_sink = &sink;
            registry::HttpResponse response;
            try {
                response = options_.http->perform(request);
            } catch (Error& e) {
                retryable = e.category() == ErrorCategory::unavailable;  // connection dropped, timeout
                throw e.with_context(what);
            }
            if (response.status < 200 || response.status >= 300) {
                const long status = response.status;
                retryable = status == 408 || status == 429 || status >= 500;
                throw Error(status == 404                    ? ErrorCategory::not_found
                            : status == 401 || status == 403 ? ErrorCategory::unauthorized
                                                             : ErrorCategory::unavailable,
                            what + ": GET " + redact_url(url) + ": HTTP " + std::to_string(status));
            }
            check_digest(record, sink.finish_hex(), url, what);
            core::UniqueFd fd = core::open_file(file.temp_path(), O_RDONLY);
            file.commit();
            if (options_.log) options_.log("downloaded " + file_name_of(record) + " from " + redact_url(url));
            return fd;
        } catch (const Error&) {
            if (!retryable || attempt >= max_attempts) throw;
        }
        if (options_.log) options_.log(what + ": " + redact_url(url) + ": retrying (attempt " + std::to_string(attempt + 1) + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(500) * attempt);
    }
}

core::UniqueFd PackageCache::fetch(const PackageRecord& record, const fs::path& stored, const std::string& what) const {
    if (record.url.empty()) throw Error(ErrorCategory::invalid_input, what + ": the record has no URL");
    const std::vector<std::string> urls = mirror_urls(record.url, options_.channels);
    std::vector<Error> failures;
    for (const std::string& url : urls) {
        try {
            if (url.starts_with("file://")) {
                // Read in place: verified, never copied into the cache.
                const std::string path = file_url_to_path(url, what).string();
                HashingSink sink(nullptr);
                core::UniqueFd fd = core::with_context(what, [&] {
                    core::UniqueFd file = core::open_file(path, O_RDONLY);
                    std::vector<char> buf(1 << 20);
                    for (;;) {
                        const std::size_t n = core::read_full(file.get(), buf.data(), buf.size(), path);
                        if (n == 0) break;
                        sink.write(buf.data(), n);
                    }
                    return file;
                });
                check_digest(record, sink.finish_hex(), url, what);
                return fd;
            }
            if (!url.starts_with("http://") && !url.starts_with("https://")) {
                throw Error(ErrorCategory::unsupported, what + ": " + redact_url(url) + ": unsupported URL scheme");
            }
            if (options_.http == nullptr) {
                throw Error(ErrorCategory::internal, what + ": " + redact_url(url) + ": no HTTP client given to the installer");
            }
            return download(record, url, stored, what);
        } catch (const Error& e) {
            failures.push_back(e);
        }
    }
    if (failures.empty()) throw Error(ErrorCategory::invalid_input, what + ": no URL to fetch it from");
    if (failures.size() == 1) throw failures.front();
    // Several sources: say what each answered; a mismatch anywhere is what the user must see.
    ErrorCategory category = failures.back().category();
    std::string message = what + ": no source delivered it:";
    for (const Error& e : failures) {
        if (e.category() == ErrorCategory::integrity) category = ErrorCategory::integrity;
        message += "\n  " + std::string(e.what());
    }
    throw Error(category, message);
}

}  // namespace ocibuild::conda::detail
