#include "ocibuild/registry/client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/oci/json.hpp"
#include "ocibuild/oci/media_type.hpp"

namespace ocibuild::registry {

namespace {
using core::Error;
using core::ErrorCategory;
namespace fs = std::filesystem;

constexpr std::int64_t monolithic_limit = 16 << 20;  // smaller blobs go up in one PUT
constexpr std::size_t manifest_limit = 32 << 20;

const std::string& manifest_accept() {
    static const std::string accept = [] {
        std::string s;
        for (auto mt : {oci::media_type::oci_manifest, oci::media_type::oci_index, oci::media_type::docker_manifest,
                        oci::media_type::docker_manifest_list, oci::media_type::docker_manifest_v1_signed,
                        oci::media_type::docker_manifest_v1})
            s += (s.empty() ? "" : ", ") + std::string(mt);
        return s;
    }();
    return accept;
}

bool is_loopback(std::string_view registry) {
    auto host = registry.substr(0, registry.rfind(':') == std::string_view::npos || registry.front() == '['
                                       ? registry.size()
                                       : registry.rfind(':'));
    return host == "localhost" || host.starts_with("127.") || host == "[::1]";
}

std::string strip_params(std::string_view content_type) {
    auto semi = content_type.find(';');
    auto s = content_type.substr(0, semi);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return std::string(s);
}

// "HTTP 404 MANIFEST_UNKNOWN: manifest unknown" from a distribution error body.
std::string describe_status(const HttpResponse& resp) {
    std::string out = "HTTP " + std::to_string(resp.status);
    try {
        auto j = nlohmann::json::parse(resp.body);
        if (j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
            const auto& e = j["errors"][0];
            out += " " + e.value("code", std::string{});
            if (e.contains("message") && e["message"].is_string()) out += ": " + e["message"].get<std::string>();
        }
    } catch (const nlohmann::json::exception&) {
    }
    return out;
}

ErrorCategory status_category(long status) {
    if (status == 401 || status == 403) return ErrorCategory::unauthorized;
    if (status == 404) return ErrorCategory::not_found;
    if (status == 429 || status >= 500) return ErrorCategory::unavailable;
    return ErrorCategory::invalid_input;
}

[[noreturn]] void throw_status(const HttpResponse& resp, const std::string& what) {
    auto message = what + ": " + describe_status(resp);
    if (resp.status == 401) message += " (unauthorized: log in with `ocibuild login` or pass --authfile)";
    if (resp.status == 403) message += " (denied)";
    throw Error(status_category(resp.status), message);
}

class CollectSink : public core::ByteSink {
public:
    explicit CollectSink(std::size_t limit) : limit_(limit) {}
    void write(const void* data, std::size_t size) override {
        if (data_.size() + size > limit_)
            throw Error(ErrorCategory::invalid_input, "response larger than " + std::to_string(limit_) + " bytes");
        data_.append(static_cast<const char*>(data), size);
    }
    std::string data_;

private:
    std::size_t limit_;
};

std::string add_query(std::string url, std::string_view param) {
    url += url.find('?') == std::string::npos ? '?' : '&';
    url += param;
    return url;
}

std::chrono::milliseconds retry_delay(const HttpResponse* resp, std::chrono::milliseconds backoff, unsigned attempt) {
    if (resp != nullptr) {
        if (auto ra = resp->header("retry-after")) {
            char* end = nullptr;
            long s = std::strtol(ra->c_str(), &end, 10);
            if (end != ra->c_str() && s >= 0) return std::chrono::milliseconds(std::min<long>(s, 60) * 1000);
        }
    }
    auto d = backoff * (1u << std::min(attempt, 6u));
    return std::min<std::chrono::milliseconds>(d, std::chrono::seconds(10));
}
}  // namespace

struct RegistryClient::Host {
    std::string registry;
    std::string api_host;
    std::string scheme;  // decided on first contact
    TlsConfig tls;
    // Credentials may differ per repository (auth.json namespace keys such as quay.io/org/repo):
    // one Authenticator per distinct credential, found per repository once.
    std::mutex auth_mutex;
    std::map<std::string, Authenticator*> auth_by_repository;
    std::map<std::string, std::unique_ptr<Authenticator>> auth_by_credential;
    std::optional<HttpResponse> challenge;  // the ping's 401, taught to every new Authenticator
    std::once_flag ping_once;
    std::exception_ptr ping_error;
};

RegistryClient::RegistryClient(ClientOptions options) : options_(std::move(options)) {}
RegistryClient::~RegistryClient() = default;

RegistryClient::Host& RegistryClient::host(const std::string& registry) {
    std::lock_guard lock(hosts_mutex_);
    auto& slot = hosts_[registry];
    if (!slot) {
        auto h = std::make_unique<Host>();
        h->registry = registry;
        h->api_host = registry == docker_hub ? "registry-1.docker.io" : registry;
        bool insecure = options_.insecure_registries.count(registry) > 0;
        h->tls.verify = !insecure;
        // Per-registry CA and client certificates, as /etc/containers/certs.d/<host:port>/.
        for (const auto& dir : options_.cert_dirs) {
            std::error_code ec;
            auto d = dir / registry;
            if (!fs::is_directory(d, ec)) continue;
            std::vector<fs::path> files;
            for (const auto& e : fs::directory_iterator(d, ec)) files.push_back(e.path());
            std::sort(files.begin(), files.end());
            for (const auto& f : files) {
                auto ext = f.extension().string();
                if (ext == ".crt" && h->tls.ca_file.empty()) h->tls.ca_file = f.string();
                if (ext == ".cert") {
                    h->tls.client_cert = f.string();
                    auto key = f;
                    key.replace_extension(".key");
                    if (fs::exists(key, ec)) h->tls.client_key = key.string();
                }
            }
            break;
        }
        slot = std::move(h);
    }
    Host& h = *slot;
    // First contact: HTTPS, or plain HTTP for loopback and insecure registries that do not speak TLS.
    std::call_once(h.ping_once, [&] {
        bool may_plain = options_.insecure_registries.count(registry) > 0 ||
                         (options_.loopback_insecure && is_loopback(registry));
        HttpRequest ping;
        ping.url = "https://" + h.api_host + "/v2/";
        ping.tls = h.tls;
        ping.connect_timeout_seconds = 15;
        ping.timeout_seconds = 60;
        try {
            auto resp = http_.perform(ping);
            h.scheme = "https";
            if (resp.status == 401) h.challenge = resp;
        } catch (const Error& e) {
            if (!may_plain) {
                h.ping_error = std::current_exception();
                return;
            }
            ping.url = "http://" + h.api_host + "/v2/";
            try {
                auto resp = http_.perform(ping);
                if (resp.status == 400) {
                    // A TLS server answering a plain request (Go says 400): the HTTPS failure is the real one.
                    h.ping_error = std::make_exception_ptr(Error(
                        e.category(), e.message() + " (the registry speaks TLS: give its CA with --cert-dir DIR, "
                                                    "as DIR/" + registry + "/ca.crt, or name it with --insecure-registry)"));
                    return;
                }
                h.scheme = "http";
                if (resp.status == 401) h.challenge = resp;
            } catch (const Error&) {
                h.ping_error = std::make_exception_ptr(Error(e.category(), e.message()));
            }
        }
    });
    if (h.ping_error) {
        try {
            std::rethrow_exception(h.ping_error);
        } catch (Error& e) {
            Error copy(e.category(), e.message());
            copy.with_context("cannot reach registry " + registry);
            throw copy;
        }
    }
    return h;
}

Authenticator& RegistryClient::authenticator(Host& h, const std::string& repository) {
    std::lock_guard lock(h.auth_mutex);
    if (auto it = h.auth_by_repository.find(repository); it != h.auth_by_repository.end()) return *it->second;
    std::optional<Credential> cred;
    if (auto it = options_.explicit_credentials.find(h.registry); it != options_.explicit_credentials.end())
        cred = it->second;
    else if (options_.credentials)
        cred = options_.credentials->lookup(h.registry, repository);
    // Keyed by who we are, never printed.
    std::string key = cred ? cred->username + '\n' + cred->password + '\n' + cred->identity_token : std::string("\x01anonymous");
    auto& slot = h.auth_by_credential[key];
    if (!slot) {
        slot = std::make_unique<Authenticator>(http_, h.tls, std::move(cred));
        if (h.challenge) slot->on_challenge(*h.challenge);
    }
    h.auth_by_repository[repository] = slot.get();
    return *slot;
}

HttpResponse RegistryClient::send(const std::string& registry, const std::string& repository, HttpRequest request,
                                  std::vector<std::string> scopes, bool retry_transport) {
    Host& h = host(registry);
    Authenticator& auth = authenticator(h, repository);
    if (!request.url.starts_with("http://") && !request.url.starts_with("https://"))
        request.url = h.scheme + "://" + h.api_host + request.url;
    request.tls = h.tls;
    bool same_host = url_host(request.url) == h.api_host;
    bool auth_retried = false;
    for (unsigned attempt = 0;; ++attempt) {
        std::erase_if(request.headers, [](const auto& kv) { return kv.first == "Authorization"; });
        if (same_host) {
            if (auto value = auth.authorization(scopes)) request.headers.emplace_back("Authorization", *value);
        }
        HttpResponse resp;
        try {
            resp = http_.perform(request);
        } catch (const Error& e) {
            if (!retry_transport || e.category() != ErrorCategory::unavailable || attempt + 1 >= options_.max_attempts)
                throw;
            std::this_thread::sleep_for(retry_delay(nullptr, options_.initial_backoff, attempt));
            continue;
        }
        if (resp.status == 401 && same_host && !auth_retried) {
            // A challenge we had not seen, an expired token, or insufficient_scope: learn and retry once.
            auth_retried = true;
            auth.on_challenge(resp);
            auth.invalidate(scopes);
            for (const auto& c : Challenge::parse(resp.header("www-authenticate").value_or(""))) {
                auto it = c.params.find("scope");
                if (it != c.params.end() && std::find(scopes.begin(), scopes.end(), it->second) == scopes.end() &&
                    c.params.count("error"))
                    scopes.push_back(it->second);
            }
            if (request.body_reader) return resp;  // a stream cannot be replayed; the caller restarts
            --attempt;
            continue;
        }
        bool retryable = resp.status == 429 || resp.status == 500 || resp.status == 502 || resp.status == 503 ||
                         resp.status == 504;
        if (retryable && attempt + 1 < options_.max_attempts && !request.body_reader) {
            std::this_thread::sleep_for(retry_delay(&resp, options_.initial_backoff, attempt));
            continue;
        }
        return resp;
    }
}

void RegistryClient::check_auth(const std::string& registry) {
    HttpRequest req;
    req.url = "/v2/";
    req.timeout_seconds = 60;
    auto resp = send(registry, "", std::move(req), {});
    if (resp.status != 200) throw_status(resp, "authenticating to " + registry);
}

ManifestBytes RegistryClient::get_manifest(const Reference& ref) {
    auto target = ref.digest.empty() ? ref.tag : ref.digest.str();
    auto what = "fetching manifest " + ref.to_string();
    return core::with_context(what, [&] {
        CollectSink body(manifest_limit);
        HttpRequest req;
        req.url = "/v2/" + ref.repository + "/manifests/" + target;
        req.headers.emplace_back("Accept", manifest_accept());
        req.response_sink = &body;
        req.timeout_seconds = 300;
        auto resp = send(ref.registry, ref.repository, std::move(req), {repository_scope(ref.repository, "pull")});
        if (resp.status != 200) throw_status(resp, "GET manifest");
        ManifestBytes mb;
        mb.bytes = std::move(body.data_);
        mb.digest = core::Digest::of(mb.bytes);
        mb.media_type = strip_params(resp.header("content-type").value_or(""));
        if (!ref.digest.empty() && mb.digest != ref.digest)
            throw Error(ErrorCategory::integrity,
                        "digest mismatch: expected " + ref.digest.str() + ", got " + mb.digest.str());
        if (auto header = resp.header("docker-content-digest")) {
            auto d = core::Digest::parse(*header);
            if (d && *d != mb.digest)
                throw Error(ErrorCategory::integrity, "registry says the manifest is " + d->str() +
                                                          " but its bytes hash to " + mb.digest.str());
        }
        // The body's own mediaType wins over a missing or generic Content-Type; they must not disagree.
        std::string body_type;
        try {
            auto j = nlohmann::json::parse(mb.bytes);
            if (j.is_object()) {
                body_type = j.value("mediaType", std::string{});
                if (j.value("schemaVersion", 0) == 1) mb.media_type = std::string(oci::media_type::docker_manifest_v1);
                if (body_type.empty() && j.contains("manifests")) body_type = oci::media_type::oci_index;
                if (body_type.empty() && j.contains("layers")) body_type = oci::media_type::oci_manifest;
            }
        } catch (const nlohmann::json::exception&) {
            throw Error(ErrorCategory::invalid_input, "the registry sent a manifest that is not JSON");
        }
        if (oci::media_type::is_schema1(mb.media_type))
            throw Error(ErrorCategory::unsupported,
                        "Docker schema 1 manifests are not supported (re-push the image with a current client)");
        bool known = oci::media_type::is_manifest(mb.media_type) || oci::media_type::is_index(mb.media_type);
        if (!known) mb.media_type = body_type;
        else if (!body_type.empty() && body_type != mb.media_type)
            throw Error(ErrorCategory::invalid_input,
                        "Content-Type " + mb.media_type + " disagrees with the manifest's mediaType " + body_type);
        if (!oci::media_type::is_manifest(mb.media_type) && !oci::media_type::is_index(mb.media_type))
            throw Error(ErrorCategory::unsupported, "unsupported manifest type \"" + mb.media_type + "\"");
        return mb;
    });
}

std::optional<oci::Descriptor> RegistryClient::head_manifest(const Reference& ref) {
    auto target = ref.digest.empty() ? ref.tag : ref.digest.str();
    HttpRequest req;
    req.method = "HEAD";
    req.url = "/v2/" + ref.repository + "/manifests/" + target;
    req.headers.emplace_back("Accept", manifest_accept());
    auto resp = send(ref.registry, ref.repository, std::move(req), {repository_scope(ref.repository, "pull")});
    if (resp.status == 404) return std::nullopt;
    if (resp.status != 200) throw_status(resp, "HEAD manifest " + ref.to_string());
    oci::Descriptor d;
    d.media_type = strip_params(resp.header("content-type").value_or(""));
    auto digest = resp.header("docker-content-digest");
    if (!digest) return std::nullopt;
    d.digest = core::Digest::must_parse(*digest);
    d.size = std::stoll(resp.header("content-length").value_or("0"));
    return d;
}

void RegistryClient::put_manifest(const Reference& repo, std::string_view tag_or_digest, const ManifestBytes& manifest) {
    core::with_context("pushing manifest " + manifest.digest.str() + " to " + repo.name() + ":" + std::string(tag_or_digest), [&] {
        HttpRequest req;
        req.method = "PUT";
        req.url = "/v2/" + repo.repository + "/manifests/" + std::string(tag_or_digest);
        req.headers.emplace_back("Content-Type", manifest.media_type);
        req.body = manifest.bytes;
        auto resp = send(repo.registry, repo.repository, std::move(req), {repository_scope(repo.repository, "pull,push")});
        if (resp.status != 201 && resp.status != 200) throw_status(resp, "PUT manifest");
        if (auto header = resp.header("docker-content-digest")) {
            auto d = core::Digest::parse(*header);
            if (d && *d != manifest.digest)
                throw Error(ErrorCategory::integrity,
                            "the registry stored the manifest as " + d->str() + ", not " + manifest.digest.str());
        }
    });
}

bool RegistryClient::blob_exists(const Reference& repo, const core::Digest& digest) {
    HttpRequest req;
    req.method = "HEAD";
    req.url = "/v2/" + repo.repository + "/blobs/" + digest.str();
    auto resp = send(repo.registry, repo.repository, std::move(req), {repository_scope(repo.repository, "pull,push")});
    if (resp.status == 200) return true;
    if (resp.status == 404) return false;
    throw_status(resp, "HEAD blob " + digest.str());
}

void RegistryClient::fetch_blob(const Reference& repo, const oci::Descriptor& blob, const store::Store& store) {
    if (store.has(blob.digest)) {
        if (options_.progress) options_.progress->start(blob, "exists");
        if (options_.progress) options_.progress->done(blob);
        return;
    }
    core::with_context("pulling blob " + blob.digest.str() + " from " + repo.name(), [&] {
        if (options_.progress) options_.progress->start(blob, "pull");
        auto writer = store.ingest();
        // Appends to the blob being written; a server that ignored Range and restarted from byte 0
        // overruns the descriptor's size and is refused (nothing is stored).
        struct ResumeSink : core::ByteSink {
            store::BlobWriter& out;
            const oci::Descriptor& blob;
            TransferProgress* progress;
            ResumeSink(store::BlobWriter& o, const oci::Descriptor& b, TransferProgress* p)
                : out(o), blob(b), progress(p) {}
            void write(const void* p, std::size_t size) override {
                if (out.size() + size > static_cast<std::uint64_t>(blob.size))
                    throw Error(ErrorCategory::integrity, "the registry sent more than the " +
                                                              std::to_string(blob.size) + " bytes the descriptor says");
                out.write(p, size);
                if (progress) progress->advance(blob, size);
            }
        } sink(writer, blob, options_.progress);
        unsigned failures = 0;
        while (true) {
            HttpRequest req;
            req.url = "/v2/" + repo.repository + "/blobs/" + blob.digest.str();
            std::uint64_t offset = writer.size();
            if (offset > 0) req.headers.emplace_back("Range", "bytes=" + std::to_string(offset) + "-");
            req.response_sink = &sink;
            HttpResponse resp;
            try {
                resp = send(repo.registry, repo.repository, req, {repository_scope(repo.repository, "pull")}, false);
            } catch (const Error& e) {
                // A dropped connection: resume from what we have, with backoff, a bounded number of times.
                if (e.category() != ErrorCategory::unavailable || ++failures >= options_.max_attempts) throw;
                std::this_thread::sleep_for(retry_delay(nullptr, options_.initial_backoff, failures));
                continue;
            }
            if (resp.status == 416 && offset == static_cast<std::uint64_t>(blob.size)) break;
            if (resp.status != 200 && resp.status != 206) throw_status(resp, "GET blob");
            if (writer.size() < static_cast<std::uint64_t>(blob.size)) {
                if (++failures >= options_.max_attempts)
                    throw Error(ErrorCategory::unavailable, "the registry ended the blob early at byte " +
                                                                std::to_string(writer.size()));
                continue;
            }
            break;
        }
        (void)writer.commit(blob.media_type, blob.digest, blob.size);
        if (options_.progress) options_.progress->done(blob);
    });
}

void RegistryClient::push_blob(const Reference& repo, const oci::Descriptor& blob, const store::Store& store,
                               const std::string& mount_from) {
    core::with_context("pushing blob " + blob.digest.str() + " to " + repo.name(), [&] {
        if (blob_exists(repo, blob.digest)) {
            if (options_.progress) options_.progress->start(blob, "exists");
            if (options_.progress) options_.progress->done(blob);
            return;
        }
        auto push_scope = repository_scope(repo.repository, "pull,push");
        std::string location;
        std::string base;
        if (!mount_from.empty() && mount_from != repo.repository) {
            HttpRequest req;
            req.method = "POST";
            req.url = "/v2/" + repo.repository + "/blobs/uploads/?mount=" + url_escape(blob.digest.str()) +
                      "&from=" + url_escape(mount_from);
            auto resp = send(repo.registry, repo.repository, std::move(req),
                             {push_scope, repository_scope(mount_from, "pull")});
            if (resp.status == 201) {
                if (options_.progress) options_.progress->start(blob, "mount");
                if (options_.progress) options_.progress->done(blob);
                return;
            }
            if (resp.status == 202 && resp.header("location")) {
                location = resolve_url(resp.url, *resp.header("location"));
            }
        }
        if (options_.progress) options_.progress->start(blob, "push");
        for (unsigned attempt = 0;; ++attempt) {
            try {
                if (location.empty()) {
                    HttpRequest req;
                    req.method = "POST";
                    req.url = "/v2/" + repo.repository + "/blobs/uploads/";
                    auto resp = send(repo.registry, repo.repository, std::move(req), {push_scope});
                    if (resp.status != 202 || !resp.header("location")) throw_status(resp, "starting upload");
                    location = resolve_url(resp.url, *resp.header("location"));
                }
                auto fd = store.open_blob(blob.digest);
                std::uint64_t sent = 0;
                auto reader = [&](char* buf, std::size_t max) -> std::size_t {
                    auto n = core::read_full(fd.get(), buf, max, store.blob_path(blob.digest).string());
                    sent += n;
                    if (options_.progress && n > 0) options_.progress->advance(blob, n);
                    return n;
                };
                HttpResponse resp;
                if (blob.size <= monolithic_limit) {
                    HttpRequest put;
                    put.method = "PUT";
                    put.url = add_query(location, "digest=" + url_escape(blob.digest.str()));
                    put.headers.emplace_back("Content-Type", "application/octet-stream");
                    put.body_reader = reader;
                    put.body_size = blob.size;
                    resp = send(repo.registry, repo.repository, std::move(put), {push_scope}, false);
                } else {
                    // One streaming PATCH of the whole blob, then an empty PUT: what containers/image
                    // does, and what every registry accepts for multi-GB layers.
                    HttpRequest patch;
                    patch.method = "PATCH";
                    patch.url = location;
                    patch.headers.emplace_back("Content-Type", "application/octet-stream");
                    patch.body_reader = reader;
                    patch.body_size = blob.size;
                    resp = send(repo.registry, repo.repository, std::move(patch), {push_scope}, false);
                    if (resp.status != 202 && resp.status != 204) throw_status(resp, "uploading");
                    if (auto loc = resp.header("location")) location = resolve_url(resp.url, *loc);
                    HttpRequest put;
                    put.method = "PUT";
                    put.url = add_query(location, "digest=" + url_escape(blob.digest.str()));
                    put.stall_seconds = 0;  // the registry may verify and move gigabytes before answering
                    put.timeout_seconds = 3600;
                    resp = send(repo.registry, repo.repository, std::move(put), {push_scope}, false);
                }
                if (resp.status != 201 && resp.status != 204 && resp.status != 200) throw_status(resp, "finishing upload");
                if (auto header = resp.header("docker-content-digest")) {
                    auto d = core::Digest::parse(*header);
                    if (d && *d != blob.digest)
                        throw Error(ErrorCategory::integrity, "the registry stored the blob as " + d->str());
                }
                break;
            } catch (const Error& e) {
                // A failed upload session cannot be resumed portably: start a new one.
                bool retry = (e.category() == ErrorCategory::unavailable) && attempt + 1 < options_.max_attempts;
                if (!retry) throw;
                location.clear();
                std::this_thread::sleep_for(retry_delay(nullptr, options_.initial_backoff, attempt));
            }
        }
        if (options_.progress) options_.progress->done(blob);
    });
}

}  // namespace ocibuild::registry
