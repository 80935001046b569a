#include "reader.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <system_error>

namespace ocibuild::recipe::detail {

namespace fs = std::filesystem;

Reader::Reader(std::string_view text, std::string file) : file_(std::move(file)) {
    std::size_t start = 0;
    while (start <= text.size()) {
        auto nl = text.find('\n', start);
        auto line = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines_.emplace_back(line);
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    // toml++ does not count a byte order mark as a column.
    if (!lines_.empty() && lines_.front().starts_with("\xEF\xBB\xBF")) lines_.front().erase(0, 3);
}

SourcePos Reader::at(const toml::source_position& p) const {
    if (p.line == 0) return SourcePos{file_, 0, 0};
    return SourcePos{file_, static_cast<int>(p.line), static_cast<int>(p.column == 0 ? 1 : p.column)};
}

void Reader::error(const SourcePos& pos, std::string message) {
    Diagnostic d{pos, std::move(message), {}};
    if (pos.line > 0 && static_cast<std::size_t>(pos.line) <= lines_.size()) d.source_line = lines_[pos.line - 1];
    diagnostics_.push_back(std::move(d));
}

namespace {
bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

std::size_t utf8_length(unsigned long cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }
}  // namespace

SourcePos Reader::in_string(const SourcePos& string_pos, std::size_t offset) const {
    if (string_pos.line <= 0 || static_cast<std::size_t>(string_pos.line) > lines_.size()) return string_pos;
    const std::string& line = lines_[static_cast<std::size_t>(string_pos.line) - 1];
    // Columns count code points.
    std::size_t i = 0;
    int column = 1;
    while (i < line.size() && column < string_pos.column) {
        ++i;
        while (i < line.size() && continuation(line[i])) ++i;
        ++column;
    }
    if (i >= line.size()) return string_pos;
    const char quote_char = line[i];
    if (quote_char != '"' && quote_char != '\'') return string_pos;
    if (line.compare(i, 3, std::string(3, quote_char)) == 0) return string_pos;
    ++i;
    ++column;
    std::size_t decoded = 0;  // bytes of the value before i
    while (i < line.size() && line[i] != quote_char) {
        std::size_t raw = 1;    // source bytes of this character or escape
        std::size_t bytes = 1;  // value bytes it stands for
        int columns = 1;
        if (quote_char == '"' && line[i] == '\\' && i + 1 < line.size()) {
            raw = 2;
            if (line[i + 1] == 'u' || line[i + 1] == 'U') {
                const std::size_t digits = line[i + 1] == 'u' ? 4 : 8;
                raw = 2 + digits;
                bytes = utf8_length(std::strtoul(line.substr(i + 2, digits).c_str(), nullptr, 16));
            }
            columns = static_cast<int>(raw);
        } else {
            while (i + raw < line.size() && continuation(line[i + raw])) ++raw;
            bytes = raw;
        }
        if (decoded + bytes > offset) break;
        decoded += bytes;
        i += raw;
        column += columns;
    }
    return SourcePos{string_pos.file, string_pos.line, column};
}

std::vector<Diagnostic> Reader::take() {
    std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.column < b.pos.column;
    });
    return std::move(diagnostics_);
}

void Reader::check_keys(const toml::table& t, std::string_view where, std::span<const std::string_view> allowed) {
    for (auto&& [k, v] : t) {
        if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) unknown_key(k, where, allowed);
    }
}

void Reader::unknown_key(const toml::key& k, std::string_view where, std::span<const std::string_view> candidates) {
    std::string msg = "unknown key " + quote(k.str()) + " in " + std::string(where);
    if (auto s = suggest(k.str(), candidates)) {
        msg += "; did you mean " + quote(*s) + "?";
    } else if (where != "the top level" && (k.str() == "image" || k.str() == "base" || k.str() == "step" ||
                                            k.str() == "config" || k.str() == "conda")) {
        // The classic TOML slip: a top-level key written below a [table] header lands in that table.
        msg += " (a key below a [table] header belongs to that table: move it above the first header)";
    }
    error(at(k), std::move(msg));
}

void Reader::wrong_type(const toml::node& n, std::string_view subject, std::string_view expected) {
    error(at(n), std::string(subject) + " must be " + std::string(expected) + ", not " + a_type(n));
}

const toml::table* Reader::table(const toml::node& n, std::string_view subject, std::string_view expected) {
    if (const auto* t = n.as_table()) return t;
    wrong_type(n, subject, expected);
    return nullptr;
}

std::optional<std::string> Reader::string(const toml::node& n, std::string_view subject) {
    if (const auto* s = n.as_string()) return s->get();
    wrong_type(n, subject, "a string");
    return std::nullopt;
}

std::optional<std::string> Reader::nonempty_string(const toml::node& n, std::string_view subject) {
    auto s = string(n, subject);
    if (s && s->empty()) {
        error(at(n), std::string(subject) + " must not be empty");
        return std::nullopt;
    }
    return s;
}

std::optional<std::string> Reader::absolute_path(const toml::node& n, std::string_view subject) {
    auto s = string(n, subject);
    if (s && !s->starts_with('/')) {
        error(at(n), std::string(subject) + " must be an absolute path, not " + quote(*s));
        return std::nullopt;
    }
    return s;
}

std::optional<std::vector<Item>> Reader::string_items(const toml::node& n, std::string_view key,
                                                      std::string_view where, bool nonempty_items) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
        wrong_type(n, subject(key, where), "an array of strings");
        return std::nullopt;
    }
    std::vector<Item> items;
    bool ok = true;
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        if (const auto* s = e.as_string()) {
            if (nonempty_items && s->get().empty()) {
                error(at(e), item_subject(i + 1, key, where) + " must not be empty");
                ok = false;
            }
            items.push_back(Item{s->get(), at(e)});
        } else {
            wrong_type(e, item_subject(i + 1, key, where), "a string");
            ok = false;
        }
    }
    if (!ok) return std::nullopt;
    return items;
}

std::optional<std::vector<std::string>> Reader::strings(const toml::node& n, std::string_view key,
                                                        std::string_view where, bool nonempty_items) {
    auto items = string_items(n, key, where, nonempty_items);
    if (!items) return std::nullopt;
    std::vector<std::string> out;
    out.reserve(items->size());
    for (auto& i : *items) out.push_back(std::move(i.value));
    return out;
}

std::optional<std::vector<Entry>> Reader::string_table(const toml::node& n, std::string_view key,
                                                       std::string_view parent) {
    const auto* t = table(n, subject(key, parent));
    if (t == nullptr) return std::nullopt;
    std::string where = std::string(parent) + "." + std::string(key);
    std::vector<Entry> entries;
    bool ok = true;
    for (auto&& [k, v] : *t) {
        if (const auto* s = v.as_string()) {
            entries.push_back(Entry{std::string(k.str()), at(k), s->get(), at(v)});
        } else {
            wrong_type(v, subject(k.str(), where), "a string");
            ok = false;
        }
    }
    if (!ok) return std::nullopt;
    return entries;
}

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (u < 0x20 || u == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(u));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    return out;
}

std::string subject(std::string_view key, std::string_view where) {
    return quote(key) + " in " + std::string(where);
}

std::string item_subject(std::size_t index, std::string_view key, std::string_view where) {
    return "item " + std::to_string(index) + " of " + subject(key, where);
}

std::string a_type(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date:
        case toml::node_type::time:
        case toml::node_type::date_time: return "a date/time";
        case toml::node_type::none: break;
    }
    return "nothing";
}

namespace {
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), ignoring case.
std::size_t distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[a.size()][b.size()];
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    if (prefix.size() > s.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (lower(s[i]) != lower(prefix[i])) return false;
    return true;
}
}  // namespace

std::optional<std::string_view> suggest(std::string_view key, std::span<const std::string_view> candidates) {
    std::optional<std::string_view> best;
    std::size_t best_distance = 3;
    for (auto c : candidates) {
        auto d = distance(key, c);
        // A short key is "close" to anything short: demand that some of it survives.
        if (d < best_distance && d < key.size()) {
            best = c;
            best_distance = d;
        }
    }
    if (best) return best;
    for (auto c : candidates) {
        if ((key.size() >= 3 && starts_with_nocase(c, key)) || (c.size() >= 3 && starts_with_nocase(key, c)))
            return c;
    }
    return std::nullopt;
}

std::string render(const std::vector<Diagnostic>& diagnostics) {
    std::string out;
    for (const auto& d : diagnostics) {
        if (!out.empty()) out += '\n';
        out += d.pos.file;
        if (d.pos.line > 0) out += ":" + std::to_string(d.pos.line) + ":" + std::to_string(d.pos.column);
        out += ": ";
        out += d.message;
        if (d.pos.line <= 0 || d.source_line.empty()) continue;
        out += "\n  ";
        out += d.source_line;
        out += "\n  ";
        // The caret goes under the column-th code point; tabs are copied so it lines up.
        int column = 1;
        for (std::size_t i = 0; i < d.source_line.size() && column < d.pos.column; ++i) {
            auto c = static_cast<unsigned char>(d.source_line[i]);
            if ((c & 0xC0) == 0x80) continue;
            out += c == '\t' ? '\t' : ' ';
            ++column;
        }
        for (; column < d.pos.column; ++column) out += ' ';
        out += '^';
    }
    return out;
}

void env_table(Reader& r, const toml::node& n, std::string_view parent, std::map<std::string, std::string>& out) {
    auto entries = r.string_table(n, "env", parent);
    if (!entries) return;
    for (auto& e : *entries) {
        if (e.key.empty() || e.key.find('=') != std::string::npos)
            r.error(e.key_pos, "bad variable name " + quote(e.key) + " in " + std::string(parent) +
                                   ".env: it must be non-empty and without \"=\"");
        else
            out[e.key] = e.value;
    }
}

fs::path resolve(const fs::path& directory, std::string_view relative) {
    fs::path p = (directory / fs::path(relative)).lexically_normal();
    if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
    return p;
}

bool exists_here(const fs::path& p) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(p, ec));
}

}  // namespace ocibuild::recipe::detail
