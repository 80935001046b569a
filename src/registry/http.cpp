// The only file that includes libcurl. Design notes:
// - Connections are kept alive per easy handle, and handles are pooled: curl's shared connection
//   cache (CURL_LOCK_DATA_CONNECT) is not thread-safe (curl known bug 11.11, curl#4915), so the
//   share object holds only DNS and TLS sessions.
// - Redirects are followed here, not by curl, so Authorization never reaches another origin.
// - Nothing thrown may cross curl's C callbacks: exceptions are parked and rethrown afterwards.
#include "ocibuild/registry/http.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <exception>
#include <filesystem>
#include <mutex>
#include <system_error>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::registry {

namespace {

constexpr const char* user_agent = "ocibuild/0.1.0";
constexpr std::size_t error_body_cap = std::size_t{4} << 20;
constexpr int max_redirects = 10;
constexpr std::size_t max_pooled_handles = 8;
constexpr long transfer_buffer_size = 512L << 10;
constexpr const char* system_ca_bundle = "/etc/ssl/certs/ca-certificates.crt";

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw core::Error(core::ErrorCategory::internal, "cannot initialise libcurl");
    });
}

// --- URLs ----------------------------------------------------------------------------------------

// RFC 3986 appendix B: scheme, authority, path, query, fragment (each optional but path).
struct UrlParts {
    std::optional<std::string> scheme;
    std::optional<std::string> authority;
    std::string path;
    std::optional<std::string> query;
    std::optional<std::string> fragment;
};

UrlParts split_url(std::string_view s) {
    UrlParts p;
    if (auto colon = s.find_first_of(":/?#"); colon != std::string_view::npos && colon > 0 && s[colon] == ':') {
        p.scheme = std::string(s.substr(0, colon));
        s.remove_prefix(colon + 1);
    }
    if (s.substr(0, 2) == "//") {
        s.remove_prefix(2);
        auto end = std::min(s.find_first_of("/?#"), s.size());
        p.authority = std::string(s.substr(0, end));
        s.remove_prefix(end);
    }
    if (auto hash = s.find('#'); hash != std::string_view::npos) {
        p.fragment = std::string(s.substr(hash + 1));
        s = s.substr(0, hash);
    }
    if (auto q = s.find('?'); q != std::string_view::npos) {
        p.query = std::string(s.substr(q + 1));
        s = s.substr(0, q);
    }
    p.path = std::string(s);
    return p;
}

std::string join_url(const UrlParts& p) {
    std::string out;
    if (p.scheme) out += *p.scheme + ":";
    if (p.authority) out += "//" + *p.authority;
    out += p.path;
    if (p.query) out += "?" + *p.query;
    if (p.fragment) out += "#" + *p.fragment;
    return out;
}

// RFC 3986 §5.2.4.
std::string remove_dot_segments(std::string in) {
    std::string out;
    auto drop_last_segment = [&out] {
        auto slash = out.rfind('/');
        out.erase(slash == std::string::npos ? 0 : slash);
    };
    while (!in.empty()) {
        if (in.starts_with("../")) {
            in.erase(0, 3);
        } else if (in.starts_with("./")) {
            in.erase(0, 2);
        } else if (in.starts_with("/./")) {
            in.erase(0, 2);
        } else if (in == "/.") {
            in = "/";
        } else if (in.starts_with("/../")) {
            in.erase(0, 3);
            drop_last_segment();
        } else if (in == "/..") {
            in = "/";
            drop_last_segment();
        } else if (in == "." || in == "..") {
            in.clear();
        } else {
            auto end = in.find('/', in.front() == '/' ? 1 : 0);
            if (end == std::string::npos) end = in.size();
            out.append(in, 0, end);
            in.erase(0, end);
        }
    }
    return out;
}

// "user:pass@host:port" → "host:port".
std::string_view strip_userinfo(std::string_view authority) {
    if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    return authority;
}

// scheme://host:port with the default port made explicit, for same-origin checks.
std::string origin(std::string_view url) {
    auto p = split_url(url);
    std::string scheme = lower(p.scheme.value_or(""));
    std::string host = lower(strip_userinfo(p.authority.value_or("")));
    auto bracket = host.rfind(']');
    auto colon = host.rfind(':');
    bool has_port = colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
    if (has_port && colon + 1 == host.size()) host.pop_back(), has_port = false;
    if (!has_port) host += scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
    return scheme + "://" + host;
}

// The URL as it may appear in a message: no userinfo, no query (presigned URLs carry secrets there).
bool is_redirect(long status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// --- curl callbacks ------------------------------------------------------------------------------

// State for one request/response exchange (one redirect hop).
struct Exchange {
    CURL* easy = nullptr;
    HttpResponse* response = nullptr;
    core::ByteSink* sink = nullptr;
    // Body upload: from memory, or through the caller's reader.
    std::string_view memory_body;
    std::size_t memory_offset = 0;
    const std::function<std::size_t(char*, std::size_t)>* reader = nullptr;
    // Response body routing, decided at the first body byte when the status is known.
    bool decided = false;
    bool to_sink = false;
    bool capped = false;  // error body reached the cap; the transfer was cut on purpose
    std::exception_ptr error;
};

extern "C" std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    std::string_view line(data, size * count);
    try {
        if (line.starts_with("HTTP/")) {
            // A new status line (an interim 1xx response came first): start over.
            ex->response->headers.clear();
        } else if (auto colon = line.find(':'); colon != std::string_view::npos && colon > 0) {
            ex->response->headers.emplace(lower(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
        }
    } catch (...) {
        ex->error = std::current_exception();
        return 0;
    }
    return size * count;
}

extern "C" std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    const std::size_t n = size * count;
    try {
        if (!ex->decided) {
            long status = 0;
            curl_easy_getinfo(ex->easy, CURLINFO_RESPONSE_CODE, &status);
            ex->to_sink = ex->sink != nullptr && status >= 200 && status < 300;
            ex->decided = true;
        }
        if (ex->to_sink) {
            ex->sink->write(data, n);
            return n;
        }
        auto& body = ex->response->body;
        const std::size_t room = error_body_cap - body.size();
        body.append(data, std::min(n, room));
        if (n > room) {
            ex->capped = true;
            return 0;  // stop reading: nobody wants more than the cap of an error body
        }
        return n;
    } catch (...) {
        ex->error = std::current_exception();
        return 0;
    }
}

extern "C" std::size_t on_read(char* buffer, std::size_t size, std::size_t count, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    const std::size_t max = size * count;
    try {
        std::size_t n = 0;
        if (ex->reader != nullptr) {
            n = (*ex->reader)(buffer, max);
            if (n > max) throw core::Error(core::ErrorCategory::internal, "request body reader overran its buffer");
        } else {
            n = std::min(max, ex->memory_body.size() - ex->memory_offset);
            std::copy_n(ex->memory_body.data() + ex->memory_offset, n, buffer);
            ex->memory_offset += n;
        }
        return n;
    } catch (...) {
        ex->error = std::current_exception();
        return CURL_READFUNC_ABORT;
    }
}

// Curl wants the lists alive for the whole transfer.
struct SList {
    curl_slist* list = nullptr;
    SList() = default;
    SList(const SList&) = delete;
    SList& operator=(const SList&) = delete;
    ~SList() { curl_slist_free_all(list); }
    void add(const std::string& line) {
        auto* next = curl_slist_append(list, line.c_str());
        if (next == nullptr) throw std::bad_alloc();
        list = next;
    }
};

template <class T>
void setopt(CURL* easy, CURLoption option, T value) {
    if (auto rc = curl_easy_setopt(easy, option, value); rc != CURLE_OK)
        throw core::Error(core::ErrorCategory::internal,
                          std::string("curl_easy_setopt failed: ") + curl_easy_strerror(rc));
}

bool has_header(const std::vector<std::pair<std::string, std::string>>& headers, std::string_view name) {
    return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

// One request of a possibly redirected exchange.
struct Hop {
    std::string method;
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    bool with_body = true;
};

// Turns `hop` into the request a redirect asks for.
void follow(Hop& hop, long status, std::string next) {
    if (origin(next) != origin(hop.url))
        std::erase_if(hop.headers, [](const auto& h) { return iequals(h.first, "authorization"); });
    if (status == 303 && hop.method != "HEAD") {
        hop.method = "GET";
        hop.with_body = false;
        std::erase_if(hop.headers, [](const auto& h) {
            return iequals(h.first, "content-type") || iequals(h.first, "content-length") ||
                   iequals(h.first, "content-range");
        });
    }
    hop.url = std::move(next);
}

void set_transport_options(CURL* easy, const HttpRequest& request, const Hop& hop) {
    setopt(easy, CURLOPT_URL, hop.url.c_str());
    setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    setopt(easy, CURLOPT_NOSIGNAL, 1L);
    setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    setopt(easy, CURLOPT_USERAGENT, user_agent);
    // Bigger buffers than curl's 16/64 KiB defaults: fewer callbacks for multi-GB layers.
    // curl refuses a new size once a handle has a buffer; the pooled handle then keeps its own.
    static_cast<void>(curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, transfer_buffer_size));
    setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, transfer_buffer_size);
    if (request.connect_timeout_seconds > 0) setopt(easy, CURLOPT_CONNECTTIMEOUT, request.connect_timeout_seconds);
    if (request.timeout_seconds > 0) setopt(easy, CURLOPT_TIMEOUT, request.timeout_seconds);
    // A stalled transfer (under 1 byte/s for a minute) fails instead of hanging forever.
    if (request.stall_seconds > 0) {
        setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        setopt(easy, CURLOPT_LOW_SPEED_TIME, request.stall_seconds);
    }
}

// Whether this hop carries a request body (possibly empty: PUT/POST/PATCH always send a length).
bool sends_body(const HttpRequest& request, const Hop& hop) {
    const bool body_method = hop.method == "POST" || hop.method == "PUT" || hop.method == "PATCH";
    return hop.with_body && (body_method || request.body_reader || !request.body.empty());
}

void set_method_and_body(CURL* easy, const HttpRequest& request, const Hop& hop, Exchange& ex) {
    const std::string& method = hop.method;
    if (!sends_body(request, hop)) {
        if (method == "HEAD") {
            setopt(easy, CURLOPT_NOBODY, 1L);
        } else {
            setopt(easy, CURLOPT_HTTPGET, 1L);
            if (method != "GET") setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
        }
        return;
    }
    curl_off_t size = 0;
    if (request.body_reader) {
        ex.reader = &request.body_reader;
        size = static_cast<curl_off_t>(request.body_size);  // -1: chunked
    } else {
        ex.memory_body = request.body;
        size = static_cast<curl_off_t>(request.body.size());
    }
    setopt(easy, CURLOPT_READFUNCTION, &on_read);
    setopt(easy, CURLOPT_READDATA, &ex);
    if (method == "POST") {
        setopt(easy, CURLOPT_POST, 1L);
        setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, size);
    } else {
        setopt(easy, CURLOPT_UPLOAD, 1L);
        setopt(easy, CURLOPT_INFILESIZE_LARGE, size);
        if (method != "PUT") setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
}

void add_headers(SList& list, const HttpRequest& request, const Hop& hop) {
    for (const auto& [name, value] : hop.headers) {
        // A value from a server (a token) must not smuggle in more header lines.
        if ((name + value).find_first_of("\r\n") != std::string::npos)
            throw core::Error(core::ErrorCategory::invalid_input,
                              hop.method + " " + redact_url(hop.url) + ": header " + name + " holds a line break");
        list.add(value.empty() ? name + ";" : name + ": " + value);
    }
    if (sends_body(request, hop)) {
        list.add("Expect:");  // no 100-continue round trip
        if (hop.method == "POST" && !has_header(hop.headers, "content-type"))
            list.add("Content-Type:");  // not curl's default form type
    }
}

[[noreturn]] void throw_transport_error(CURLcode rc, const char* errbuf, const Hop& hop) {
    std::string why = errbuf[0] != '\0' ? std::string(trim(errbuf)) : curl_easy_strerror(rc);
    // A URL curl cannot use will not get better by retrying.
    auto category = rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL ? core::ErrorCategory::invalid_input
                                                                                 : core::ErrorCategory::unavailable;
    throw core::Error(category, hop.method + " " + redact_url(hop.url) + ": " + why);
}

}  // namespace

std::string redact_url(std::string_view url) {
    auto p = split_url(url);
    if (p.authority) p.authority = std::string(strip_userinfo(*p.authority));
    if (p.query) p.query = "...";
    p.fragment.reset();
    return join_url(p);
}

// --- HttpClient ----------------------------------------------------------------------------------

struct HttpClient::Shared {
    CURLSH* share = nullptr;
    std::array<std::mutex, CURL_LOCK_DATA_LAST> locks;

    std::mutex pool_mutex;
    std::vector<CURL*> pool;  // idle easy handles, each with its live connections

    std::mutex ca_mutex;
    struct CaBundle {
        std::filesystem::file_time_type mtime;
        std::string pem;  // system bundle + the extra file
    };
    std::map<std::string, CaBundle> ca_bundles;

    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<Shared*>(user)->locks.at(static_cast<std::size_t>(data)).lock();
    }
    static void unlock(CURL*, curl_lock_data data, void* user) {
        static_cast<Shared*>(user)->locks.at(static_cast<std::size_t>(data)).unlock();
    }

    Shared() {
        share = curl_share_init();
        if (share == nullptr) throw core::Error(core::ErrorCategory::internal, "curl_share_init failed");
        curl_share_setopt(share, CURLSHOPT_USERDATA, this);
        curl_share_setopt(share, CURLSHOPT_LOCKFUNC, &Shared::lock);
        curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, &Shared::unlock);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    ~Shared() {
        for (CURL* easy : pool) curl_easy_cleanup(easy);
        curl_share_cleanup(share);
    }
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;

    CURL* acquire() {
        {
            std::lock_guard lock(pool_mutex);
            if (!pool.empty()) {
                CURL* easy = pool.back();
                pool.pop_back();
                return easy;
            }
        }
        CURL* easy = curl_easy_init();
        if (easy == nullptr) throw core::Error(core::ErrorCategory::internal, "curl_easy_init failed");
        return easy;
    }
    void release(CURL* easy, bool reusable) {
        // Forget every option now: they point at buffers of the finished request. The handle
        // keeps its open connections.
        curl_easy_reset(easy);
        std::lock_guard lock(pool_mutex);
        if (reusable && pool.size() < max_pooled_handles) {
            pool.push_back(easy);
        } else {
            curl_easy_cleanup(easy);
        }
    }

    // A pooled easy handle, given back on scope exit.
    class Lease {
    public:
        explicit Lease(Shared& shared) : shared_(shared), easy_(shared.acquire()) {}
        ~Lease() { shared_.release(easy_, reusable_); }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        [[nodiscard]] CURL* get() const { return easy_; }
        // After a failed transfer: a fresh handle next time rather than one in an odd state.
        void discard() { reusable_ = false; }

    private:
        Shared& shared_;
        CURL* easy_;
        bool reusable_ = true;
    };

    // One request and its response, on a pooled handle.
    HttpResponse exchange(const HttpRequest& request, const Hop& hop) {
        Lease lease(*this);
        CURL* easy = lease.get();
        HttpResponse response;
        response.url = hop.url;
        Exchange ex;
        ex.easy = easy;
        ex.response = &response;
        ex.sink = request.response_sink;

        char errbuf[CURL_ERROR_SIZE] = {};
        setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
        setopt(easy, CURLOPT_SHARE, share);
        set_transport_options(easy, request, hop);
        set_tls_options(easy, request.tls);
        set_method_and_body(easy, request, hop, ex);
        SList headers;
        add_headers(headers, request, hop);
        setopt(easy, CURLOPT_HTTPHEADER, headers.list);
        setopt(easy, CURLOPT_HEADERFUNCTION, &on_header);
        setopt(easy, CURLOPT_HEADERDATA, &ex);
        setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
        setopt(easy, CURLOPT_WRITEDATA, &ex);

        const CURLcode rc = curl_easy_perform(easy);
        if (rc != CURLE_OK) lease.discard();
        if (ex.error) std::rethrow_exception(ex.error);
        if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && ex.capped)) throw_transport_error(rc, errbuf, hop);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response.status);
        return response;
    }

    void set_tls_options(CURL* easy, const TlsConfig& tls) {
        setopt(easy, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
        setopt(easy, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
        if (tls.verify && !tls.ca_file.empty()) {
            std::string pem = ca_bundle(tls.ca_file);
            curl_blob blob{pem.data(), pem.size(), CURL_BLOB_COPY};
            setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
        }
        if (!tls.client_cert.empty()) setopt(easy, CURLOPT_SSLCERT, tls.client_cert.c_str());
        if (!tls.client_key.empty()) setopt(easy, CURLOPT_SSLKEY, tls.client_key.c_str());
    }

    // The system CAs plus `extra`: CURLOPT_CAINFO alone would replace the system bundle.
    std::string ca_bundle(const std::string& extra) {
        std::error_code ec;
        auto mtime = std::filesystem::last_write_time(extra, ec);
        std::lock_guard lock(ca_mutex);
        if (auto it = ca_bundles.find(extra); it != ca_bundles.end() && !ec && it->second.mtime == mtime)
            return it->second.pem;
        std::string pem;
        try {
            pem = core::read_file(system_ca_bundle);
            if (!pem.empty() && pem.back() != '\n') pem += '\n';
        } catch (const core::Error&) {
            // No system bundle here: the extra CAs alone.
        }
        pem += core::with_context("reading CA file", [&] { return core::read_file(extra); });
        ca_bundles[extra] = CaBundle{mtime, pem};
        return pem;
    }
};

HttpClient::HttpClient() {
    global_init();
    shared_ = std::make_unique<Shared>();
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::perform(const HttpRequest& request) const {
    Hop hop{request.method, request.url, request.headers, true};
    for (int redirects = 0;; ++redirects) {
        HttpResponse response = shared_->exchange(request, hop);
        if (!request.follow_redirects || !is_redirect(response.status)) return response;
        auto location = response.header("location");
        if (!location) return response;
        // A streamed body cannot be sent twice: the caller sees the redirect itself.
        if (request.body_reader && hop.with_body && response.status != 303) return response;
        if (redirects >= max_redirects)
            throw core::Error(core::ErrorCategory::unavailable,
                              request.method + " " + redact_url(request.url) + ": more than 10 redirects");
        follow(hop, response.status, resolve_url(hop.url, *location));
    }
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
    auto it = headers.find(lower(name));
    if (it == headers.end()) return std::nullopt;
    return it->second;
}

// --- URL helpers ---------------------------------------------------------------------------------

std::string resolve_url(std::string_view base, std::string_view location) {
    const UrlParts b = split_url(base);
    const UrlParts r = split_url(location);
    UrlParts t;
    // RFC 3986 §5.2.2.
    if (r.scheme) {
        t = r;
        t.path = remove_dot_segments(r.path);
    } else {
        if (r.authority) {
            t.authority = r.authority;
            t.path = remove_dot_segments(r.path);
            t.query = r.query;
        } else {
            if (r.path.empty()) {
                t.path = b.path;
                t.query = r.query ? r.query : b.query;
            } else {
                if (r.path.front() == '/') {
                    t.path = remove_dot_segments(r.path);
                } else {
                    // §5.2.3 merge.
                    std::string merged;
                    if (b.authority && b.path.empty()) {
                        merged = "/" + r.path;
                    } else {
                        auto slash = b.path.rfind('/');
                        merged = (slash == std::string::npos ? std::string() : b.path.substr(0, slash + 1)) + r.path;
                    }
                    t.path = remove_dot_segments(merged);
                }
                t.query = r.query;
            }
            t.authority = b.authority;
        }
        t.scheme = b.scheme;
    }
    t.fragment = r.fragment;
    return join_url(t);
}

std::string url_host(std::string_view url) {
    auto p = split_url(url);
    if (p.authority) return std::string(strip_userinfo(*p.authority));
    // No scheme: "host:port/path".
    auto end = std::min(url.find_first_of("/?#"), url.size());
    return std::string(strip_userinfo(url.substr(0, end)));
}

std::string url_escape(std::string_view value) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (alnum || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 0xf];
        }
    }
    return out;
}

}  // namespace ocibuild::registry
