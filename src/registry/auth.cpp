#include "ocibuild/registry/auth.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "ocibuild/core/error.hpp"

namespace ocibuild::registry {

namespace {

using Clock = std::chrono::steady_clock;

constexpr long min_token_lifetime_s = 60;       // token spec: default and minimum expires_in
constexpr long token_safety_margin_s = 10;      // refresh a little before the server's deadline
constexpr long token_request_timeout_s = 60;
constexpr const char* oauth_client_id = "ocibuild";

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// RFC 7230 tchar.
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 7235 token68 characters (before the '=' padding).
bool is_token68_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~+/").find(c) != std::string_view::npos;
}

// A cursor over a WWW-Authenticate value.
class Scanner {
public:
    explicit Scanner(std::string_view s) : s_(s) {}
    [[nodiscard]] bool done() const { return i_ >= s_.size(); }
    [[nodiscard]] char peek() const { return done() ? '\0' : s_[i_]; }
    [[nodiscard]] std::size_t pos() const { return i_; }
    void seek(std::size_t pos) { i_ = pos; }
    void skip_ws() {
        while (!done() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
    }
    void skip_ws_and_commas() {
        while (!done() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == ',')) ++i_;
    }
    void skip_to_comma() {
        while (!done() && s_[i_] != ',') ++i_;
    }
    std::string_view token() {
        auto start = i_;
        while (!done() && is_tchar(s_[i_])) ++i_;
        return s_.substr(start, i_ - start);
    }
    // token68 followed by optional whitespace and then a comma or the end; otherwise nothing.
    std::optional<std::string_view> token68() {
        auto start = i_;
        auto j = i_;
        while (j < s_.size() && is_token68_char(s_[j])) ++j;
        if (j == start) return std::nullopt;
        while (j < s_.size() && s_[j] == '=') ++j;
        auto end = j;
        while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t')) ++j;
        if (j < s_.size() && s_[j] != ',') return std::nullopt;
        i_ = j;
        return s_.substr(start, end - start);
    }
    // A quoted-string (backslash escapes any character); tolerates a missing closing quote.
    std::string quoted() {
        std::string out;
        ++i_;  // opening quote
        while (!done() && s_[i_] != '"') {
            if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
            out += s_[i_++];
        }
        if (!done()) ++i_;  // closing quote
        return out;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
};

// Parses auth-params into `c` until the next challenge (a token not followed by '=') or the end.
void parse_params(Scanner& in, Challenge& c) {
    for (;;) {
        in.skip_ws_and_commas();
        if (in.done()) return;
        auto start = in.pos();
        auto name = in.token();
        if (name.empty()) {
            in.skip_to_comma();  // garbage: skip this list element
            continue;
        }
        in.skip_ws();
        if (in.peek() != '=') {
            in.seek(start);  // a new challenge's scheme
            return;
        }
        in.seek(in.pos() + 1);
        in.skip_ws();
        std::string value = in.peek() == '"' ? in.quoted() : std::string(in.token());
        c.params.emplace(lower(name), std::move(value));  // first occurrence wins
        in.skip_ws();
        if (!in.done() && in.peek() != ',') in.skip_to_comma();
    }
}

// Standard base64 with padding (RFC 4648 §4).
std::string base64(std::string_view in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                     static_cast<unsigned char>(in[i + 2]);
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += alphabet[v >> 6 & 63];
        out += alphabet[v & 63];
    }
    if (i < in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += i + 1 < in.size() ? alphabet[v >> 6 & 63] : '=';
        out += '=';
    }
    return out;
}

std::string scope_key(const std::vector<std::string>& scopes) {
    std::vector<std::string> sorted = scopes;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::string key;
    for (const auto& s : sorted) {
        if (!key.empty()) key += ' ';
        key += s;
    }
    return key;
}

std::vector<std::string> split_spaces(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        auto sp = s.find(' ');
        if (sp != 0) out.emplace_back(s.substr(0, sp));
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return out;
}

std::string param(const Challenge& c, const char* name) {
    auto it = c.params.find(name);
    return it == c.params.end() ? std::string() : it->second;
}

struct FetchedToken {
    std::string value;
    long expires_in = min_token_lifetime_s;
};

// Asks the token server (distribution token spec, or its OAuth2 variant with a refresh token).
FetchedToken fetch_token(const HttpClient& http, const TlsConfig& tls, const Challenge& challenge,
                         const std::optional<Credential>& credential, const std::vector<std::string>& scopes) {
    const std::string realm = param(challenge, "realm");
    const std::string service = param(challenge, "service");
    const std::string who = service.empty() ? url_host(realm) : service;
    if (realm.empty())
        throw core::Error(core::ErrorCategory::unauthorized,
                          "authenticating to " + who + ": the Bearer challenge names no realm");

    HttpRequest req;
    req.tls = tls;
    req.timeout_seconds = token_request_timeout_s;
    if (credential && !credential->identity_token.empty()) {
        // OAuth2 refresh-token grant; scopes are space-separated in one form field.
        std::string scope_list;
        for (const auto& s : scopes) scope_list += (scope_list.empty() ? "" : " ") + s;
        req.method = "POST";
        req.url = realm;
        req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
        req.body = "grant_type=refresh_token&refresh_token=" + url_escape(credential->identity_token) +
                   "&service=" + url_escape(service) + "&client_id=" + oauth_client_id;
        if (!scope_list.empty()) req.body += "&scope=" + url_escape(scope_list);
    } else {
        std::string query;
        auto add = [&query](std::string_view name, std::string_view value) {
            query += query.empty() ? "" : "&";
            query += std::string(name) + "=" + url_escape(value);
        };
        if (!service.empty()) add("service", service);
        for (const auto& s : scopes) add("scope", s);
        if (credential && !credential->username.empty()) add("account", credential->username);
        req.method = "GET";
        req.url = realm;
        if (!query.empty()) req.url += (realm.find('?') == std::string::npos ? "?" : "&") + query;
        if (credential && !credential->username.empty())
            req.headers.emplace_back("Authorization",
                                     "Basic " + base64(credential->username + ":" + credential->password));
    }

    HttpResponse resp = http.perform(req);
    if (resp.status != 200) {
        // Busy or broken token servers are worth a retry; refusals are not.
        auto category = resp.status == 429 || resp.status >= 500 ? core::ErrorCategory::unavailable
                                                                 : core::ErrorCategory::unauthorized;
        throw core::Error(category, "authenticating to " + who + ": token server answered " +
                                        std::to_string(resp.status));
    }
    // The body is never quoted in messages: it may echo what we sent.
    auto doc = nlohmann::json::parse(resp.body, nullptr, false);
    FetchedToken token;
    if (doc.is_object()) {
        for (const char* field : {"token", "access_token"}) {
            if (auto it = doc.find(field); it != doc.end() && it->is_string() && !it->get<std::string>().empty()) {
                token.value = it->get<std::string>();
                break;
            }
        }
        if (auto it = doc.find("expires_in"); it != doc.end() && it->is_number())
            token.expires_in = std::max(min_token_lifetime_s, it->get<long>());
    }
    if (token.value.empty())
        throw core::Error(core::ErrorCategory::unauthorized,
                          "authenticating to " + who + ": token server answered without a token");
    return token;
}

}  // namespace

std::vector<Challenge> Challenge::parse(std::string_view header) {
    std::vector<Challenge> out;
    Scanner in(header);
    for (;;) {
        in.skip_ws_and_commas();
        if (in.done()) break;
        auto scheme = in.token();
        if (scheme.empty()) {
            in.skip_to_comma();
            continue;
        }
        Challenge c;
        c.scheme = lower(scheme);
        in.skip_ws();
        if (auto t68 = in.token68()) {
            c.params.emplace("token68", std::string(*t68));
        } else {
            parse_params(in, c);
        }
        out.push_back(std::move(c));
    }
    return out;
}

std::string repository_scope(std::string_view repository, std::string_view actions) {
    return "repository:" + std::string(repository) + ":" + std::string(actions);
}

Authenticator::Authenticator(const HttpClient& http, TlsConfig tls, std::optional<Credential> credential)
    : http_(http), tls_(std::move(tls)), credential_(std::move(credential)) {}

void Authenticator::on_challenge(const HttpResponse& unauthorized) {
    std::optional<Challenge> bearer;
    std::optional<Challenge> basic;
    auto [first, last] = unauthorized.headers.equal_range("www-authenticate");
    for (auto it = first; it != last; ++it) {
        for (auto& c : Challenge::parse(it->second)) {
            if (c.scheme == "bearer" && !bearer) bearer = std::move(c);
            if (c.scheme == "basic" && !basic) basic = std::move(c);
        }
    }
    // A 401 without a usable challenge (gcr.io once sent none) keeps what the ping taught us.
    std::optional<Challenge> chosen = bearer ? std::move(bearer) : std::move(basic);
    if (!chosen) return;

    std::lock_guard lock(mutex_);
    if (challenge_ && (challenge_->scheme != chosen->scheme || param(*challenge_, "realm") != param(*chosen, "realm") ||
                       param(*challenge_, "service") != param(*chosen, "service")))
        tokens_.clear();  // another token server: its tokens are not ours
    challenge_ = std::move(chosen);
}

std::optional<std::string> Authenticator::authorization(const std::vector<std::string>& scopes) {
    Challenge challenge;
    std::vector<std::string> wanted = scopes;
    std::string key;
    {
        std::lock_guard lock(mutex_);
        if (!challenge_) return std::nullopt;
        if (challenge_->scheme == "basic") {
            if (!credential_ || credential_->username.empty()) return std::nullopt;
            return "Basic " + base64(credential_->username + ":" + credential_->password);
        }
        challenge = *challenge_;
        // With no scopes of our own (the ping), ask for what the challenge named.
        if (wanted.empty()) wanted = split_spaces(param(challenge, "scope"));
        key = scope_key(wanted);
        if (auto it = tokens_.find(key); it != tokens_.end()) {
            if (Clock::now() < it->second.expires) return "Bearer " + it->second.value;
            tokens_.erase(it);
        }
    }

    // The fetch runs unlocked so that other scopes proceed; two threads may fetch the same scope
    // at once, which costs a request and is otherwise harmless.
    const auto started = Clock::now();
    FetchedToken fetched = fetch_token(http_, tls_, challenge, credential_, wanted);
    const auto lifetime = std::chrono::seconds(fetched.expires_in - token_safety_margin_s);

    std::lock_guard lock(mutex_);
    tokens_[key] = Token{fetched.value, started + lifetime};
    return "Bearer " + fetched.value;
}

void Authenticator::invalidate(const std::vector<std::string>& scopes) {
    std::lock_guard lock(mutex_);
    std::vector<std::string> wanted = scopes;
    if (wanted.empty() && challenge_) wanted = split_spaces(param(*challenge_, "scope"));
    tokens_.erase(scope_key(wanted));
}

}  // namespace ocibuild::registry
