#pragma once
// conda MatchSpec (CEP 29): `[channel[/subdir]:[namespace]:]name[ version[ build]][[key=value,…]]`.
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

#include "ocibuild/conda/version.hpp"
#include "ocibuild/core/result.hpp"

namespace ocibuild::conda {

/// A name or build-string pattern: exact, glob (`*` wildcards) or `^…$` regex; case-insensitive.
class StringMatcher {
public:
    StringMatcher() = default;  // `*`: matches anything
    [[nodiscard]] static Result<StringMatcher> parse(std::string_view text);

    [[nodiscard]] bool matches(std::string_view value) const;
    [[nodiscard]] bool is_any() const noexcept { return text_ == "*"; }
    [[nodiscard]] bool is_exact() const noexcept { return kind_ == Kind::exact; }
    [[nodiscard]] const std::string& to_string() const noexcept { return text_; }
    bool operator==(const StringMatcher& other) const { return text_ == other.text_; }

private:
    enum class Kind { exact, glob, regex };
    Kind kind_ = Kind::glob;
    std::string text_ = "*";
    std::shared_ptr<const std::regex> rx_;
};

/// A build_number constraint: a number with an optional operator (`3`, `>=3`, `!=2`).
struct BuildNumberSpec {
    std::string op;  // "==", "!=", "<", "<=", ">", ">="
    unsigned long long value = 0;
    [[nodiscard]] static Result<BuildNumberSpec> parse(std::string_view text);
    [[nodiscard]] bool contains(unsigned long long n) const;
    [[nodiscard]] std::string to_string() const;
    bool operator==(const BuildNumberSpec&) const = default;
};

class MatchSpec {
public:
    MatchSpec() = default;
    [[nodiscard]] static Result<MatchSpec> parse(std::string_view text);

    [[nodiscard]] const std::string& channel() const noexcept { return channel_; }
    [[nodiscard]] const std::string& subdir() const noexcept { return subdir_; }
    [[nodiscard]] const std::string& name_space() const noexcept { return namespace_; }
    [[nodiscard]] const StringMatcher& name() const noexcept { return name_; }
    [[nodiscard]] const VersionSpec& version() const noexcept { return version_; }
    [[nodiscard]] const StringMatcher& build() const noexcept { return build_; }
    [[nodiscard]] const std::optional<BuildNumberSpec>& build_number() const noexcept { return build_number_; }
    /// Other bracket keys (md5, sha256, license, track_features, features, url, fn, …), as written.
    [[nodiscard]] const std::map<std::string, std::string>& extra() const noexcept { return extra_; }

    [[nodiscard]] bool matches(std::string_view name, const Version& version, std::string_view build,
                               unsigned long long build_number) const;

    /// Canonical space form plus brackets; parse(to_string()) gives an equal spec.
    [[nodiscard]] std::string to_string() const;
    bool operator==(const MatchSpec& other) const { return to_string() == other.to_string(); }

private:
    std::string channel_;
    std::string subdir_;
    std::string namespace_;
    StringMatcher name_;
    VersionSpec version_;
    StringMatcher build_;
    std::optional<BuildNumberSpec> build_number_;
    std::map<std::string, std::string> extra_;
};

}  // namespace ocibuild::conda

template <>
struct std::hash<ocibuild::conda::MatchSpec> {
    std::size_t operator()(const ocibuild::conda::MatchSpec& m) const noexcept {
        return std::hash<std::string>()(m.to_string());
    }
};
