#pragma once
// The one libcurl wrapper. Requests are explicit values; redirects are followed here, not by curl,
// so that Authorization is never sent to another host (distribution-spec: presigned blob URLs).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/sink.hpp"

namespace ocibuild::registry {

struct TlsConfig {
    bool verify = true;        // false only for registries the user listed as insecure
    std::string ca_file;       // extra CA bundle (certs.d/<host>/*.crt concatenated by the caller)
    std::string client_cert;   // PEM client certificate (certs.d/<host>/*.cert)
    std::string client_key;    // PEM key (certs.d/<host>/*.key)
};

struct HttpRequest {
    std::string method = "GET";
    std::string url;
    /// Extra headers, e.g. {"Accept", "..."}; "Authorization" is dropped on cross-host redirects.
    std::vector<std::pair<std::string, std::string>> headers;
    /// Request body: in memory ...
    std::string body;
    /// ... or streamed: fills buf with up to max bytes, returns 0 at end. body_size must then be set.
    std::function<std::size_t(char* buf, std::size_t max)> body_reader;
    std::int64_t body_size = -1;
    /// A 2xx response body goes here when set; otherwise (and for non-2xx) into HttpResponse::body,
    /// capped at 4 MiB.
    core::ByteSink* response_sink = nullptr;
    bool follow_redirects = true;
    TlsConfig tls;
    long timeout_seconds = 0;      // whole request; 0 = none (large blobs)
    long connect_timeout_seconds = 30;
    /// A transfer slower than 1 byte/s for this long is abandoned; 0 = never (a final PUT of a huge
    /// blob may legitimately wait minutes while the registry moves it to its storage).
    long stall_seconds = 60;
};

struct HttpResponse {
    long status = 0;
    std::multimap<std::string, std::string> headers;  // names lower-cased
    std::string body;
    std::string url;  // the final URL after redirects

    /// First value of a header (case-insensitive name).
    [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

class HttpClient {
public:
    HttpClient();
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// Performs the request (thread-safe: each call uses its own easy handle; connections and TLS
    /// sessions are shared). Transport failures throw core::Error(unavailable) naming the URL;
    /// HTTP error statuses are returned, not thrown.
    [[nodiscard]] HttpResponse perform(const HttpRequest& request) const;

private:
    struct Shared;
    std::unique_ptr<Shared> shared_;
};

/// RFC 3986 reference resolution: `location` (absolute, or relative to `base`) → absolute URL.
[[nodiscard]] std::string resolve_url(std::string_view base, std::string_view location);
/// The URL as messages may show it: no user:password@, the query as "...", no fragment.
[[nodiscard]] std::string redact_url(std::string_view url);
/// "https://host:port/path" → "host:port".
[[nodiscard]] std::string url_host(std::string_view url);
/// Percent-encodes a query parameter value.
[[nodiscard]] std::string url_escape(std::string_view value);

}  // namespace ocibuild::registry
