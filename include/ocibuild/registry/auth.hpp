#pragma once
// Registry authentication (distribution token spec): the WWW-Authenticate challenge, Bearer tokens
// fetched from the realm (GET with Basic, or OAuth2 POST with a refresh token), Basic auth, and a
// token cache per scope set with expiry.
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ocibuild/registry/credentials.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::registry {

struct Challenge {
    std::string scheme;                         // "bearer" or "basic", lower-cased
    std::map<std::string, std::string> params;  // realm, service, scope, error (lower-cased keys)

    /// Parses a WWW-Authenticate header value (quoted strings with commas, several challenges).
    [[nodiscard]] static std::vector<Challenge> parse(std::string_view header);
};

/// "repository:ml/pytorch:pull,push".
[[nodiscard]] std::string repository_scope(std::string_view repository, std::string_view actions);

/// Adds Authorization to requests for one registry. Thread-safe.
class Authenticator {
public:
    Authenticator(const HttpClient& http, TlsConfig tls, std::optional<Credential> credential);

    /// Learns how the registry wants to be authenticated from a 401 response.
    void on_challenge(const HttpResponse& unauthorized);
    /// The Authorization header value for `scopes` (fetching or reusing a token), or nullopt when
    /// the registry asked for nothing. Throws core::Error(unauthorized) when the token server
    /// refuses, without echoing credentials.
    [[nodiscard]] std::optional<std::string> authorization(const std::vector<std::string>& scopes);
    /// Forgets the cached token for `scopes` (after a 401 with insufficient_scope).
    void invalidate(const std::vector<std::string>& scopes);
    [[nodiscard]] bool has_credential() const { return credential_.has_value(); }

private:
    const HttpClient& http_;
    TlsConfig tls_;
    std::optional<Credential> credential_;
    std::mutex mutex_;
    std::optional<Challenge> challenge_;
    struct Token {
        std::string value;
        std::chrono::steady_clock::time_point expires;
    };
    std::map<std::string, Token> tokens_;  // key: sorted scopes joined by ' '
};

}  // namespace ocibuild::registry
