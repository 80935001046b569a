#pragma once
// A client for one or more OCI distribution registries: manifests and blobs, with auth, TLS
// settings per host, retries (429 with Retry-After, 5xx, dropped connections resumed with Range),
// and every blob verified on its way into the store.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ocibuild/oci/descriptor.hpp"
#include "ocibuild/registry/auth.hpp"
#include "ocibuild/registry/credentials.hpp"
#include "ocibuild/registry/http.hpp"
#include "ocibuild/registry/reference.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::registry {

/// Progress of blob transfers. Called from worker threads; implementations synchronise.
class TransferProgress {
public:
    virtual ~TransferProgress() = default;
    virtual void start(const oci::Descriptor& blob, std::string_view action) = 0;  // "pull", "push", "exists", "mount"
    virtual void advance(const oci::Descriptor& blob, std::uint64_t bytes) = 0;
    virtual void done(const oci::Descriptor& blob) = 0;
};

struct ClientOptions {
    /// Hosts ("host:port") reached over plain HTTP (and TLS without verification when it is HTTPS).
    std::set<std::string> insecure_registries;
    /// Loopback registries (localhost, 127.0.0.0/8, ::1) are plain-HTTP-capable by default, as
    /// Docker does: try https first, fall back to http when the server speaks plain HTTP.
    bool loopback_insecure = true;
    /// Folders holding <host:port>/{*.crt,*.cert,*.key}, searched in order.
    std::vector<std::filesystem::path> cert_dirs{"/etc/containers/certs.d", "/etc/docker/certs.d"};
    std::optional<CredentialStore> credentials;
    /// Credentials given on the command line (login, --creds): used before the credential files.
    std::map<std::string, Credential> explicit_credentials;
    unsigned parallel_transfers = 4;
    unsigned max_attempts = 5;  // per request, for 429/5xx/transport errors
    std::chrono::milliseconds initial_backoff{200};
    TransferProgress* progress = nullptr;
};

/// A manifest or index as the registry sent it: the exact bytes (their digest is the identity).
struct ManifestBytes {
    std::string bytes;
    std::string media_type;
    core::Digest digest;
};

class RegistryClient {
public:
    explicit RegistryClient(ClientOptions options);
    ~RegistryClient();

    /// GET a manifest or index by tag or digest, with every Accept type. Verified against the
    /// digest when fetched by digest, and against Docker-Content-Digest when present.
    [[nodiscard]] ManifestBytes get_manifest(const Reference& ref);
    /// HEAD: the descriptor of a manifest, or nullopt when the registry has none.
    [[nodiscard]] std::optional<oci::Descriptor> head_manifest(const Reference& ref);
    /// PUTs manifest bytes under `tag_or_digest`; checks the registry's Docker-Content-Digest.
    void put_manifest(const Reference& repo, std::string_view tag_or_digest, const ManifestBytes& manifest);

    /// Streams a blob into the store (verified); skips it when the store has it. Resumes with
    /// Range after a dropped connection.
    void fetch_blob(const Reference& repo, const oci::Descriptor& blob, const store::Store& store);
    [[nodiscard]] bool blob_exists(const Reference& repo, const core::Digest& digest);
    /// Uploads a blob from the store unless the registry has it; tries a cross-repo mount from
    /// `mount_from` (a repository on the same registry) first when given.
    void push_blob(const Reference& repo, const oci::Descriptor& blob, const store::Store& store,
                   const std::string& mount_from = {});

    /// Runs fn over items with up to parallel_transfers threads; the first error is rethrown after
    /// all started work ends.
    void parallel_for(std::size_t count, const std::function<void(std::size_t)>& fn) const;

    /// GET /v2/ with the registry's authentication; throws core::Error(unauthorized) when refused.
    void check_auth(const std::string& registry);

    [[nodiscard]] const ClientOptions& options() const { return options_; }

private:
    struct Host;
    Host& host(const std::string& registry);
    Authenticator& authenticator(Host& host, const std::string& repository);
    /// Sends a request to `registry` with auth for `scopes`, handling 401 challenges (one retry,
    /// also on insufficient_scope), 429/5xx retries with backoff, and http fallback for loopback.
    /// `request.url` may be a path ("/v2/...") on the registry or an absolute URL (an upload
    /// Location). With retry_transport false a dropped connection is thrown to the caller, which
    /// knows how to resume (Range) or restart (uploads).
    HttpResponse send(const std::string& registry, const std::string& repository, HttpRequest request,
                      std::vector<std::string> scopes, bool retry_transport = true);

    ClientOptions options_;
    HttpClient http_;
    std::mutex hosts_mutex_;
    std::map<std::string, std::unique_ptr<Host>> hosts_;
};

/// Pulls `ref` into `store`: the manifest (and the index it came from, if any) and, for the
/// manifest matching `platform`, its config and layers. Returns the top descriptor (index or
/// manifest) and tags it in the store as the reference's full name.
struct PullResult {
    oci::Descriptor top;       // what the tag points at
    oci::Descriptor manifest;  // the platform's manifest
};
[[nodiscard]] PullResult pull(RegistryClient& client, const Reference& ref, const oci::Platform& platform,
                              const store::Store& store);

/// Pushes the image or index `top` from `store` to `dest` (blobs, then manifests, then the index,
/// then the tag), skipping blobs the registry has.
/// `mount_from`: a repository on dest's registry that may hold some blobs already (the base image's),
/// tried with a cross-repo mount before uploading.
void push(RegistryClient& client, const store::Store& store, const oci::Descriptor& top, const Reference& dest,
          const std::string& mount_from = {});

}  // namespace ocibuild::registry
