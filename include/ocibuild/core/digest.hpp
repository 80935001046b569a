#pragma once
// Content digests ("sha256:<64 lowercase hex>") and streaming SHA-256 on OpenSSL EVP (SHA-NI).
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ocibuild/core/result.hpp"

namespace ocibuild::core {

class Digest {
public:
    Digest() = default;
    /// Accepts "sha256:<64 lowercase hex>"; other algorithms are refused with a clear message.
    [[nodiscard]] static Result<Digest> parse(std::string_view text);
    /// Like parse, but throws core::Error(invalid_input) naming the text.
    [[nodiscard]] static Digest must_parse(std::string_view text);
    [[nodiscard]] static Digest from_raw_sha256(const unsigned char (&raw)[32]);
    /// sha256 of a whole buffer.
    [[nodiscard]] static Digest of(std::string_view data);

    [[nodiscard]] const std::string& str() const noexcept { return text_; }
    [[nodiscard]] std::string_view algorithm() const noexcept;
    [[nodiscard]] std::string_view hex() const noexcept;
    /// First 12 hex characters, for messages.
    [[nodiscard]] std::string_view short_hex() const noexcept { return hex().substr(0, 12); }
    [[nodiscard]] bool empty() const noexcept { return text_.empty(); }

    auto operator<=>(const Digest&) const = default;
    bool operator==(const Digest&) const = default;

private:
    std::string text_;
};

/// Streaming SHA-256. update() any number of times, then finish() once.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] Digest finish();

private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
    std::uint64_t bytes_ = 0;
};

}  // namespace ocibuild::core

template <>
struct std::hash<ocibuild::core::Digest> {
    std::size_t operator()(const ocibuild::core::Digest& d) const noexcept {
        return std::hash<std::string>{}(d.str());
    }
};
