#pragma once
// Internal to the recipe module: the one place toml++ is seen. A Reader collects diagnostics
// (every mistake, not just the first) and offers typed accessors that report a wrong type in the
// one message form the module uses:
//
//   "<key>" in <where> must be <expected>, not <a type>
//
// <where> names the place: "the top level", "[image]", "[[step]] #2", "[[step]] #2.copy",
// "[config].env" ...
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "ocibuild/recipe/recipe.hpp"

namespace ocibuild::recipe::detail {

/// A string from an array or a table, with where it was written.
struct Item {
    std::string value;
    SourcePos pos;
};

/// A key = "string" pair from a table.
struct Entry {
    std::string key;
    SourcePos key_pos;
    std::string value;
    SourcePos value_pos;
};

class Reader {
public:
    Reader(std::string_view text, std::string file);

    [[nodiscard]] SourcePos at(const toml::source_position& p) const;
    [[nodiscard]] SourcePos at(const toml::node& n) const { return at(n.source().begin); }
    [[nodiscard]] SourcePos at(const toml::key& k) const { return at(k.source().begin); }

    void error(const SourcePos& pos, std::string message);
    /// The position of byte `offset` of the value of the string written at `string_pos` (its
    /// opening quote), escapes accounted for, so a caret can point inside a string. Multi-line
    /// strings keep `string_pos`.
    [[nodiscard]] SourcePos in_string(const SourcePos& string_pos, std::size_t offset) const;
    [[nodiscard]] bool failed() const noexcept { return !diagnostics_.empty(); }
    /// The diagnostics, in source order.
    [[nodiscard]] std::vector<Diagnostic> take();

    /// Reports every key of `t` not in `allowed` ("unknown key ... in <where>[; did you mean ...?]").
    void check_keys(const toml::table& t, std::string_view where, std::span<const std::string_view> allowed);
    void check_keys(const toml::table& t, std::string_view where, std::initializer_list<std::string_view> allowed) {
        check_keys(t, where, std::span<const std::string_view>(allowed.begin(), allowed.size()));
    }
    void unknown_key(const toml::key& k, std::string_view where, std::span<const std::string_view> candidates);

    /// "<subject> must be <expected>, not <a type>" at the value.
    void wrong_type(const toml::node& n, std::string_view subject, std::string_view expected);

    // Typed access: nullopt (or nullptr) after reporting the mistake.
    const toml::table* table(const toml::node& n, std::string_view subject, std::string_view expected = "a table");
    std::optional<std::string> string(const toml::node& n, std::string_view subject);
    std::optional<std::string> nonempty_string(const toml::node& n, std::string_view subject);
    std::optional<std::string> absolute_path(const toml::node& n, std::string_view subject);
    /// An array of strings; each item of `key` is named `item N of "<key>" in <where>`.
    std::optional<std::vector<Item>> string_items(const toml::node& n, std::string_view key, std::string_view where,
                                                  bool nonempty_items);
    std::optional<std::vector<std::string>> strings(const toml::node& n, std::string_view key, std::string_view where,
                                                    bool nonempty_items);
    /// A table whose values are all strings; `where` names the table itself ("[config].env").
    std::optional<std::vector<Entry>> string_table(const toml::node& n, std::string_view key,
                                                   std::string_view parent);

private:
    std::string file_;
    std::vector<std::string> lines_;
    std::vector<Diagnostic> diagnostics_;
};

/// `"text"` with quotes, backslashes and control characters escaped.
[[nodiscard]] std::string quote(std::string_view text);
/// `"key" in where`.
[[nodiscard]] std::string subject(std::string_view key, std::string_view where);
/// `item N of "key" in where` (N 1-based).
[[nodiscard]] std::string item_subject(std::size_t index, std::string_view key, std::string_view where);
/// "a string", "an integer", ...
[[nodiscard]] std::string a_type(const toml::node& n);
/// The closest candidate (edit distance ≤ 2, or a prefix), if any.
[[nodiscard]] std::optional<std::string_view> suggest(std::string_view key,
                                                      std::span<const std::string_view> candidates);
/// Every diagnostic as "file:line:column: message", the source line and a caret.
[[nodiscard]] std::string render(const std::vector<Diagnostic>& diagnostics);

/// `env = { NAME = "value" }` of `parent`, names checked, into `out`.
void env_table(Reader& r, const toml::node& n, std::string_view parent, std::map<std::string, std::string>& out);

// The sections (sections.cpp, steps.cpp).
void parse_image(Reader& r, const toml::node& n, ImageSection& out);
void parse_base(Reader& r, const toml::node& n, const std::filesystem::path& directory, BaseSpec& out);
void parse_steps(Reader& r, const toml::node& n, const std::filesystem::path& directory, std::vector<Step>& out);
void parse_config(Reader& r, const toml::node& n, ConfigSection& out);
void parse_conda_section(Reader& r, const toml::node& n, CondaSection& out);

/// `directory / relative`, lexically normal, without a trailing separator.
[[nodiscard]] std::filesystem::path resolve(const std::filesystem::path& directory, std::string_view relative);
/// Whether something (a dangling symlink counts) exists at `p`.
[[nodiscard]] bool exists_here(const std::filesystem::path& p);

}  // namespace ocibuild::recipe::detail
