#pragma once
// conda's VersionOrder (CEP 33, conda/models/version.py) and the version part of a match spec.
#include <compare>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ocibuild/core/result.hpp"

namespace ocibuild::conda {

/// A conda version: `[epoch!]main[+local]`, ordered exactly like conda's VersionOrder.
class Version {
public:
    /// One run of digits or non-digits. Kinds order: dev < other strings < numbers < post.
    struct Atom {
        enum class Kind { dev, string, number, post };
        Kind kind = Kind::number;
        std::string text;  // numbers: digits without leading zeros ("0" for zero)
        bool operator==(const Atom&) const = default;
    };
    using Component = std::vector<Atom>;

    Version() = default;
    [[nodiscard]] static Result<Version> parse(std::string_view text);

    /// The version as written (trimmed).
    [[nodiscard]] const std::string& to_string() const noexcept { return text_; }
    /// Epoch as its first component (conda's layout), then the main components.
    [[nodiscard]] const std::vector<Component>& components() const noexcept { return version_; }
    [[nodiscard]] const std::vector<Component>& local() const noexcept { return local_; }

    /// conda's VersionOrder.startswith: segment-wise prefix, so 1.2.* matches 1.2.9 but not 1.20.
    [[nodiscard]] bool starts_with(const Version& prefix) const;

    std::strong_ordering operator<=>(const Version& other) const;
    bool operator==(const Version& other) const;

    /// Consistent with ==: trailing zeros and empty trailing components are ignored.
    [[nodiscard]] std::size_t hash() const noexcept;

private:
    std::string text_;
    std::vector<Component> version_;
    std::vector<Component> local_;
};

/// The version part of a match spec: `*`, `1.2.*`, `=1.2`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `~=`,
/// `,` (and) binding tighter than `|` (or), parentheses, globs and `^…$` regexes. A bare literal
/// means exact (`1.2` is `==1.2`), as in the space form `pkg 1.2`.
class VersionSpec {
public:
    enum class Op { any, eq, ne, lt, le, gt, ge, starts_with, not_starts_with, compatible, regex };
    struct Node;

    VersionSpec();  // matches anything
    [[nodiscard]] static Result<VersionSpec> parse(std::string_view text);

    [[nodiscard]] bool contains(const Version& v) const;
    /// Canonical form: `=1.2` prints as `1.2.*`, bare `1.2` as `==1.2`; parse(to_string()) round-trips.
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] bool is_any() const;

    bool operator==(const VersionSpec& other) const { return to_string() == other.to_string(); }

private:
    std::shared_ptr<const Node> root_;
};

}  // namespace ocibuild::conda

template <>
struct std::hash<ocibuild::conda::Version> {
    std::size_t operator()(const ocibuild::conda::Version& v) const noexcept { return v.hash(); }
};
template <>
struct std::hash<ocibuild::conda::VersionSpec> {
    std::size_t operator()(const ocibuild::conda::VersionSpec& v) const noexcept {
        return std::hash<std::string>()(v.to_string());
    }
};
