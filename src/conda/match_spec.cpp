// conda MatchSpec parsing and matching (CEP 29; conda/models/match_spec.py, rattler's parse.rs).
#include "ocibuild/conda/match_spec.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <vector>

namespace ocibuild::conda {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool glob_match(std::string_view p, std::string_view s) {
    std::size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
    while (si < s.size()) {
        if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < p.size() && lower(p[pi]) == lower(s[si])) {
            ++pi, ++si;
        } else if (star != std::string_view::npos) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

constexpr std::array<std::string_view, 17> kSubdirs = {
    "noarch", "linux-32", "linux-64", "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64le",
    "linux-ppc64", "linux-s390x", "linux-riscv64", "osx-64", "osx-arm64", "win-32", "win-64", "win-arm64",
    "emscripten-wasm32", "wasi-wasm32"};

constexpr std::array<std::string_view, 18> kBracketKeys = {
    "channel", "subdir", "name", "version", "build", "build_number", "track_features", "features",
    "url", "md5", "sha256", "license", "license_family", "fn", "when", "extras", "flags", "namespace",
};

template <class T>
Result<T> shifted(Result<T> r, std::size_t by) {
    if (!r) return parse_fail(r.error().message, r.error().offset + by);
    return r;
}

bool is_op_char(char c) { return std::string_view("=<>!~").find(c) != std::string_view::npos; }

struct Bracket {
    std::string key;
    std::string value;
    std::size_t key_at = 0;
    std::size_t value_at = 0;
};

// Parses `[k=v, k='v', …]` starting at s[open] == '['; returns the offset just after ']'.
Result<std::size_t> parse_brackets(std::string_view s, std::size_t open, std::vector<Bracket>& out) {
    std::size_t i = open + 1;
    auto skip = [&] {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    };
    while (true) {
        skip();
        if (i < s.size() && s[i] == ']' && out.empty()) return i + 1;
        Bracket b;
        b.key_at = i;
        while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) b.key += s[i++];
        if (i >= s.size()) return parse_fail("unterminated '['", open);
        if (b.key.empty()) return parse_fail(std::string("expected a key, got '") + s[i] + "'", i);
        if (std::find(kBracketKeys.begin(), kBracketKeys.end(), b.key) == kBracketKeys.end())
            return parse_fail("unknown bracket key '" + b.key + "'", b.key_at);
        skip();
        if (i >= s.size()) return parse_fail("unterminated '['", open);
        if (s[i] != '=') return parse_fail("expected '=' after '" + b.key + "'", i);
        ++i;
        skip();
        if (i < s.size() && (s[i] == '\'' || s[i] == '"')) {
            char q = s[i];
            std::size_t close = s.find(q, i + 1);
            if (close == std::string_view::npos) return parse_fail("unterminated quote", i);
            b.value_at = i + 1;
            b.value = std::string(s.substr(i + 1, close - i - 1));
            i = close + 1;
        } else {
            b.value_at = i;
            while (i < s.size() && s[i] != ',' && s[i] != ']') b.value += s[i++];
            while (!b.value.empty() && (b.value.back() == ' ' || b.value.back() == '\t')) b.value.pop_back();
        }
        for (const auto& prev : out)
            if (prev.key == b.key) return parse_fail("duplicate bracket key '" + b.key + "'", b.key_at);
        out.push_back(std::move(b));
        skip();
        if (i >= s.size()) return parse_fail("unterminated '['", open);
        if (s[i] == ']') return i + 1;
        if (s[i] != ',') return parse_fail(std::string("expected ',' or ']', got '") + s[i] + "'", i);
        ++i;
    }
}

std::string quote(const std::string& v) {
    char q = v.find('\'') == std::string::npos ? '\'' : '"';
    return q + v + q;
}

}  // namespace

Result<StringMatcher> StringMatcher::parse(std::string_view text) {
    StringMatcher m;
    if (text.empty()) return parse_fail("empty pattern", 0);
    m.text_ = std::string(text);
    if (text.front() == '^' || text.back() == '$') {
        if (text.front() != '^' || text.back() != '$' || text.size() < 2)
            return parse_fail("regex must start with '^' and end with '$'", text.front() == '^' ? text.size() : 0);
        try {
            m.rx_ = std::make_shared<const std::regex>(m.text_, std::regex::ECMAScript | std::regex::icase);
        } catch (const std::regex_error&) {
            return parse_fail("invalid regex", 0);
        }
        m.kind_ = Kind::regex;
    } else {
        if (auto bad = text.find_first_of(" ,[]="); bad != std::string_view::npos)
            return parse_fail(std::string("invalid character '") + text[bad] + "'", bad);
        m.kind_ = text.find('*') == std::string_view::npos ? Kind::exact : Kind::glob;
    }
    return m;
}

bool StringMatcher::matches(std::string_view value) const {
    switch (kind_) {
        case Kind::exact:
            return value.size() == text_.size() &&
                   std::equal(value.begin(), value.end(), text_.begin(), [](char a, char b) { return lower(a) == lower(b); });
        case Kind::glob: return glob_match(text_, value);
        case Kind::regex: return std::regex_match(value.begin(), value.end(), *rx_);
    }
    return false;
}

Result<BuildNumberSpec> BuildNumberSpec::parse(std::string_view text) {
    BuildNumberSpec b;
    std::size_t n = 0;
    for (std::string_view op : {"==", "!=", "<=", ">=", "<", ">", "="}) {
        if (text.starts_with(op)) {
            n = op.size();
            b.op = op == "=" ? "==" : std::string(op);
            break;
        }
    }
    if (b.op.empty()) b.op = "==";
    std::string_view digits = text.substr(n);
    if (digits.empty()) return parse_fail("missing build number", n);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), b.value);
    if (ec != std::errc() || end != digits.data() + digits.size())
        return parse_fail("build number must be a non-negative integer", n + static_cast<std::size_t>(end - digits.data()));
    return b;
}

bool BuildNumberSpec::contains(unsigned long long n) const {
    if (op == "!=") return n != value;
    if (op == "<") return n < value;
    if (op == "<=") return n <= value;
    if (op == ">") return n > value;
    if (op == ">=") return n >= value;
    return n == value;
}

std::string BuildNumberSpec::to_string() const { return (op == "==" ? "" : op) + std::to_string(value); }

Result<MatchSpec> MatchSpec::parse(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
    if (b == e) return parse_fail("empty match spec", 0);
    MatchSpec m;

    std::vector<Bracket> brackets;
    std::size_t head_end = e;
    if (auto open = s.find('[', b); open < e) {
        auto after = parse_brackets(s.substr(0, e), open, brackets);
        if (!after) return tl::unexpected(after.error());
        if (*after != e) return parse_fail("unexpected text after ']'", *after);
        head_end = open;
        while (head_end > b && s[head_end - 1] == ' ') --head_end;
    }

    // channel[/subdir]:[namespace]:
    std::size_t region = b;
    while (region < head_end && s[region] != ' ' && !is_op_char(s[region])) ++region;
    std::size_t name_at = b;
    if (auto p = s.substr(0, region).rfind(':'); p != std::string_view::npos && p >= b) {
        std::size_t q = p > b ? s.substr(0, p).rfind(':') : std::string_view::npos;
        if (q == std::string_view::npos || q < b) return parse_fail("expected '::' between channel and name", p);
        std::string channel(s.substr(b, q - b));
        m.namespace_ = std::string(s.substr(q + 1, p - q - 1));
        if (auto slash = channel.rfind('/'); slash != std::string::npos) {
            std::string_view last = std::string_view(channel).substr(slash + 1);
            if (std::find(kSubdirs.begin(), kSubdirs.end(), last) != kSubdirs.end()) {
                m.subdir_ = std::string(last);
                channel.resize(slash);
            }
        }
        m.channel_ = channel == "*" ? "" : channel;
        name_at = p + 1;
    }

    // name
    std::size_t name_end = name_at;
    while (name_end < head_end && s[name_end] != ' ' && !is_op_char(s[name_end])) ++name_end;
    if (name_end == name_at) return parse_fail("missing package name", name_at);
    for (std::size_t k = name_at; k < name_end; ++k) {
        char c = s[k];
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '*'))
            return parse_fail(std::string("invalid character '") + c + "' in package name", k);
    }
    m.name_ = *StringMatcher::parse(s.substr(name_at, name_end - name_at));

    // version and build: `=ver[=build]` or ` ver[ build]`
    std::size_t r = name_end;
    std::string_view version_text, build_text;
    std::size_t version_at = r, build_at = r;
    if (r < head_end && s[r] == '=' && (r + 1 >= head_end || s[r + 1] != '=')) {
        std::string_view body = s.substr(r + 1, head_end - r - 1);
        if (auto sp = body.find(' '); sp != std::string_view::npos)
            return parse_fail("cannot mix '=' and ' ' separators", r + 1 + sp);
        std::size_t k = body.rfind('=');
        bool split = k != std::string_view::npos && k > 0 && !is_op_char(body[k - 1]) &&
                     body.find_first_of("<>!~,|", k) == std::string_view::npos;
        if (split) {
            version_text = body.substr(0, k);
            version_at = r + 1;
            build_text = body.substr(k + 1);
            build_at = r + 2 + k;
            if (build_text.empty()) return parse_fail("empty build string", build_at);
        } else {
            version_text = s.substr(r, head_end - r);  // keeps the '=': fuzzy
            version_at = r;
        }
    } else if (r < head_end) {
        struct Field { std::size_t at, end; };
        std::vector<Field> fields;
        std::size_t k = r;
        while (k < head_end) {
            while (k < head_end && s[k] == ' ') ++k;
            if (k >= head_end) break;
            std::size_t t = k;
            while (t < head_end && s[t] != ' ') ++t;
            bool merge = !fields.empty() &&
                         (std::string_view("=<>!~,|(").find(s[fields.back().end - 1]) != std::string_view::npos ||
                          std::string_view(",|)").find(s[k]) != std::string_view::npos);
            if (merge) fields.back().end = t;
            else fields.push_back({k, t});
            k = t;
        }
        if (fields.size() > 2) return parse_fail("unexpected text after the build string", fields[2].at);
        version_at = fields[0].at;
        version_text = s.substr(version_at, fields[0].end - version_at);
        if (!is_op_char(version_text.front())) {
            if (auto eq = version_text.find('='); eq != std::string_view::npos && fields.size() == 1 &&
                                                  version_text.find_first_of("<>!~,|") == std::string_view::npos)
                return parse_fail("cannot mix '=' and ' ' separators", version_at + eq);
        }
        if (fields.size() == 2) {
            build_at = fields[1].at;
            build_text = s.substr(build_at, fields[1].end - build_at);
        }
    }
    if (!version_text.empty()) {
        auto v = shifted(VersionSpec::parse(version_text), version_at);
        if (!v) return tl::unexpected(v.error());
        m.version_ = *v;
    }
    if (!build_text.empty()) {
        auto bm = shifted(StringMatcher::parse(build_text), build_at);
        if (!bm) return tl::unexpected(bm.error());
        m.build_ = *bm;
    }

    for (const auto& br : brackets) {
        if (br.key == "version") {
            auto v = shifted(VersionSpec::parse(br.value), br.value_at);
            if (!v) return tl::unexpected(v.error());
            m.version_ = *v;
        } else if (br.key == "build") {
            auto bm = shifted(StringMatcher::parse(br.value), br.value_at);
            if (!bm) return tl::unexpected(bm.error());
            m.build_ = *bm;
        } else if (br.key == "build_number") {
            auto bn = shifted(BuildNumberSpec::parse(br.value), br.value_at);
            if (!bn) return tl::unexpected(bn.error());
            m.build_number_ = *bn;
        } else if (br.key == "channel") {
            m.channel_ = br.value == "*" ? "" : br.value;
        } else if (br.key == "subdir") {
            m.subdir_ = br.value;
        } else if (br.key == "namespace") {
            m.namespace_ = br.value;
        } else if (br.key == "name") {
            if (br.value != m.name_.to_string())
                return parse_fail("bracket name '" + br.value + "' conflicts with '" + m.name_.to_string() + "'", br.value_at);
        } else {
            m.extra_[br.key] = br.value;
        }
    }
    return m;
}

bool MatchSpec::matches(std::string_view name, const Version& version, std::string_view build,
                        unsigned long long build_number) const {
    return name_.matches(name) && version_.contains(version) && build_.matches(build) &&
           (!build_number_ || build_number_->contains(build_number));
}

std::string MatchSpec::to_string() const {
    std::string out;
    if (!channel_.empty() || !subdir_.empty() || !namespace_.empty()) {
        out += channel_.empty() ? "*" : channel_;
        if (!subdir_.empty()) out += "/" + subdir_;
        out += ":" + namespace_ + ":";
    }
    out += name_.to_string();
    if (!version_.is_any() || !build_.is_any()) out += " " + version_.to_string();
    if (!build_.is_any()) out += " " + build_.to_string();
    std::vector<std::string> keys;
    if (build_number_) keys.push_back("build_number=" + quote(build_number_->to_string()));
    for (const auto& [k, v] : extra_) keys.push_back(k + "=" + quote(v));
    if (!keys.empty()) {
        out += "[";
        for (std::size_t i = 0; i < keys.size(); ++i) out += (i ? "," : "") + keys[i];
        out += "]";
    }
    return out;
}

}  // namespace ocibuild::conda
