#include "ocibuild/core/digest.hpp"

#include <openssl/evp.h>

#include "ocibuild/core/error.hpp"

namespace ocibuild::core {

namespace {
constexpr std::string_view sha256_prefix = "sha256:";
constexpr char hex_digits[] = "0123456789abcdef";

std::string to_hex(const unsigned char* raw, std::size_t n) {
    std::string out(n * 2, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = hex_digits[raw[i] >> 4];
        out[2 * i + 1] = hex_digits[raw[i] & 0xf];
    }
    return out;
}
}  // namespace

Result<Digest> Digest::parse(std::string_view text) {
    auto colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0)
        return parse_fail("digest must look like sha256:<64 hex digits>", 0);
    auto algorithm = text.substr(0, colon);
    if (algorithm != "sha256")
        return parse_fail("unsupported digest algorithm \"" + std::string(algorithm) + "\" (only sha256)", 0);
    auto hex = text.substr(colon + 1);
    if (hex.size() != 64)
        return parse_fail("sha256 digest needs 64 hex digits, got " + std::to_string(hex.size()),
                          colon + 1);
    for (std::size_t i = 0; i < hex.size(); ++i) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return parse_fail("digest hex must be lowercase [0-9a-f]", colon + 1 + i);
    }
    Digest d;
    d.text_ = std::string(text);
    return d;
}

Digest Digest::must_parse(std::string_view text) {
    auto d = parse(text);
    if (!d) throw Error(ErrorCategory::invalid_input, "bad digest \"" + std::string(text) + "\": " + d.error().message);
    return *d;
}

Digest Digest::from_raw_sha256(const unsigned char (&raw)[32]) {
    Digest d;
    d.text_ = std::string(sha256_prefix) + to_hex(raw, 32);
    return d;
}

Digest Digest::of(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.finish();
}

std::string_view Digest::algorithm() const noexcept {
    auto colon = text_.find(':');
    return colon == std::string::npos ? std::string_view{} : std::string_view(text_).substr(0, colon);
}

std::string_view Digest::hex() const noexcept {
    auto colon = text_.find(':');
    return colon == std::string::npos ? std::string_view{} : std::string_view(text_).substr(colon + 1);
}

struct Sha256::Ctx {
    EVP_MD_CTX* md = nullptr;
    ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
    ctx_->md = EVP_MD_CTX_new();
    if (ctx_->md == nullptr || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1)
        throw Error(ErrorCategory::internal, "OpenSSL: cannot initialise SHA-256");
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, std::size_t size) {
    if (size == 0) return;
    if (EVP_DigestUpdate(ctx_->md, data, size) != 1)
        throw Error(ErrorCategory::internal, "OpenSSL: SHA-256 update failed");
    bytes_ += size;
}

Digest Sha256::finish() {
    unsigned char raw[32];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_->md, raw, &len) != 1 || len != 32)
        throw Error(ErrorCategory::internal, "OpenSSL: SHA-256 finish failed");
    return Digest::from_raw_sha256(raw);
}

}  // namespace ocibuild::core
