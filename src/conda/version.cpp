// conda VersionOrder and VersionSpec, following conda/models/version.py (CEP 33).
#include "ocibuild/conda/version.hpp"

#include <algorithm>
#include <regex>

namespace ocibuild::conda {
namespace {

using Atom = Version::Atom;
using Kind = Version::Atom::Kind;
using Component = Version::Component;

const Atom kZero{Kind::number, "0"};

int cmp_atom(const Atom& a, const Atom& b) {
    if (a.kind != b.kind) return a.kind < b.kind ? -1 : 1;
    switch (a.kind) {
        case Kind::dev:
        case Kind::post: return 0;
        case Kind::number:
            if (a.text.size() != b.text.size()) return a.text.size() < b.text.size() ? -1 : 1;
            [[fallthrough]];
        case Kind::string: {
            int c = a.text.compare(b.text);
            return c < 0 ? -1 : (c > 0 ? 1 : 0);
        }
    }
    return 0;
}

int cmp_component(const Component& a, const Component& b) {
    for (std::size_t j = 0; j < std::max(a.size(), b.size()); ++j) {
        int c = cmp_atom(j < a.size() ? a[j] : kZero, j < b.size() ? b[j] : kZero);
        if (c != 0) return c;
    }
    return 0;
}

int cmp_list(const std::vector<Component>& a, const std::vector<Component>& b, std::size_t n) {
    static const Component empty;
    for (std::size_t i = 0; i < n; ++i) {
        int c = cmp_component(i < a.size() ? a[i] : empty, i < b.size() ? b[i] : empty);
        if (c != 0) return c;
    }
    return 0;
}

int cmp_list(const std::vector<Component>& a, const std::vector<Component>& b) {
    return cmp_list(a, b, std::max(a.size(), b.size()));
}

Component split_atoms(std::string_view comp) {
    Component out;
    std::size_t i = 0;
    while (i < comp.size()) {
        bool digit = comp[i] >= '0' && comp[i] <= '9';
        std::size_t j = i;
        while (j < comp.size() && ((comp[j] >= '0' && comp[j] <= '9') == digit)) ++j;
        std::string run(comp.substr(i, j - i));
        if (digit) {
            std::size_t nz = run.find_first_not_of('0');
            out.push_back({Kind::number, nz == std::string::npos ? "0" : run.substr(nz)});
        } else if (run == "dev") {
            out.push_back({Kind::dev, run});
        } else if (run == "post") {
            out.push_back({Kind::post, run});
        } else {
            out.push_back({Kind::string, run});
        }
        i = j;
    }
    if (out.empty() || out.front().kind != Kind::number) out.insert(out.begin(), kZero);
    return out;
}

// Splits `part` (starting at `base` in the input) into components at '.' and '_'.
Result<std::vector<Component>> split_components(std::string_view part, std::size_t base) {
    bool trailing_underscore = part.size() > 1 && part.back() == '_';
    std::string_view body = trailing_underscore ? part.substr(0, part.size() - 1) : part;
    std::vector<Component> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= body.size(); ++i) {
        if (i < body.size() && body[i] != '.' && body[i] != '_') continue;
        if (i == start) return parse_fail("empty version component", base + i);
        out.push_back(split_atoms(body.substr(start, i - start)));
        start = i + 1;
    }
    if (trailing_underscore) out.back().push_back({Kind::string, "_"});
    return out;
}

void hash_list(std::size_t& h, std::vector<Component> list) {
    for (auto& c : list)
        while (!c.empty() && c.back() == kZero) c.pop_back();
    while (!list.empty() && list.back().empty()) list.pop_back();
    for (const auto& c : list) {
        for (const auto& a : c)
            h = h * 1099511628211ULL ^ (std::hash<std::string>()(a.text) + static_cast<std::size_t>(a.kind));
        h = h * 31 + 0x9e37;
    }
    h = h * 31 + 0x51;
}

}  // namespace

Result<Version> Version::parse(std::string_view in) {
    std::size_t lead = 0;
    while (lead < in.size() && (in[lead] == ' ' || in[lead] == '\t')) ++lead;
    std::size_t end = in.size();
    while (end > lead && (in[end - 1] == ' ' || in[end - 1] == '\t')) --end;
    if (lead == end) return parse_fail("empty version", lead);
    Version v;
    v.text_ = std::string(in.substr(lead, end - lead));
    std::string s;
    for (std::size_t i = 0; i < v.text_.size(); ++i) {
        char c = v.text_[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c == '-') c = '_';
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '_' || c == '+' || c == '!';
        if (!ok) return parse_fail(std::string("invalid character '") + v.text_[i] + "' in version", lead + i);
        s.push_back(c);
    }
    std::size_t start = 0;
    std::string epoch = "0";
    if (auto bang = s.find('!'); bang != std::string::npos) {
        if (auto again = s.find('!', bang + 1); again != std::string::npos)
            return parse_fail("duplicated epoch separator '!'", lead + again);
        if (bang == 0 || s.find_first_not_of("0123456789") < bang)
            return parse_fail("epoch must be an integer", lead);
        epoch = s.substr(0, bang);
        start = bang + 1;
    }
    std::size_t plus = s.find('+', start);
    if (plus != std::string::npos) {
        if (auto again = s.find('+', plus + 1); again != std::string::npos)
            return parse_fail("duplicated local version separator '+'", lead + again);
        if (plus + 1 == s.size()) return parse_fail("empty local version", lead + plus);
    }
    std::string_view sv = s;
    std::string_view main = sv.substr(start, (plus == std::string::npos ? s.size() : plus) - start);
    if (main.empty()) return parse_fail("empty version", lead + start);
    auto comps = split_components(main, lead + start);
    if (!comps) return tl::unexpected(comps.error());
    v.version_.push_back(split_atoms(epoch));
    for (auto& c : *comps) v.version_.push_back(std::move(c));
    if (plus != std::string::npos) {
        auto local = split_components(sv.substr(plus + 1), lead + plus + 1);
        if (!local) return tl::unexpected(local.error());
        v.local_ = std::move(*local);
    }
    return v;
}

bool Version::starts_with(const Version& prefix) const {
    const std::vector<Component>* t1 = &version_;
    const std::vector<Component>* t2 = &prefix.version_;
    if (!prefix.local_.empty()) {
        if (cmp_list(version_, prefix.version_) != 0) return false;
        t1 = &local_;
        t2 = &prefix.local_;
    }
    if (t2->empty()) return true;
    std::size_t nt = t2->size() - 1;
    if (cmp_list(*t1, *t2, nt) != 0) return false;
    static const Component empty;
    const Component& v1 = t1->size() <= nt ? empty : (*t1)[nt];
    const Component& v2 = (*t2)[nt];
    std::size_t n2 = v2.size() - 1;
    for (std::size_t j = 0; j < n2; ++j)
        if (cmp_atom(j < v1.size() ? v1[j] : kZero, v2[j]) != 0) return false;
    const Atom& c2 = v2[n2];
    if (v1.size() <= n2) return false;
    const Atom& c1 = v1[n2];
    if (c2.kind == Kind::string) return c1.kind == Kind::string && c1.text.starts_with(c2.text);
    return cmp_atom(c1, c2) == 0;
}

std::strong_ordering Version::operator<=>(const Version& other) const {
    int c = cmp_list(version_, other.version_);
    if (c == 0) c = cmp_list(local_, other.local_);
    return c < 0 ? std::strong_ordering::less : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
}

bool Version::operator==(const Version& other) const { return (*this <=> other) == 0; }

std::size_t Version::hash() const noexcept {
    std::size_t h = 14695981039346656037ULL;
    hash_list(h, version_);
    hash_list(h, local_);
    return h;
}

}  // namespace ocibuild::conda

// ---------------------------------------------------------------------------------------------
// VersionSpec

namespace ocibuild::conda {

struct VersionSpec::Node {
    enum class Type { leaf, all, one };  // all: ',' (and), one: '|' (or)
    Type type = Type::leaf;
    Op op = Op::any;
    Version version;
    Version prefix;  // ~=: the version without its last component
    std::string source;  // regex clauses: as written
    std::shared_ptr<const std::regex> rx;
    std::vector<std::shared_ptr<const Node>> kids;
};

namespace {

using Node = VersionSpec::Node;
using NodePtr = std::shared_ptr<const Node>;
using Op = VersionSpec::Op;

struct SpecParser {
    std::string s;               // the input with spaces dropped
    std::vector<std::size_t> pos;  // s[i] came from input offset pos[i]; pos[s.size()] = input end
    std::size_t i = 0;

    std::size_t at(std::size_t k) const { return pos[std::min(k, s.size())]; }

    Result<NodePtr> parse_or() {
        auto first = parse_and();
        if (!first) return first;
        auto node = std::make_shared<Node>();
        node->type = Node::Type::one;
        node->kids.push_back(*first);
        while (i < s.size() && s[i] == '|') {
            ++i;
            auto next = parse_and();
            if (!next) return next;
            node->kids.push_back(*next);
        }
        if (node->kids.size() == 1) return node->kids.front();
        return NodePtr(node);
    }

    Result<NodePtr> parse_and() {
        auto node = std::make_shared<Node>();
        node->type = Node::Type::all;
        while (true) {
            auto kid = parse_atom();
            if (!kid) return kid;
            if ((*kid)->type == Node::Type::all) {
                for (const auto& k : (*kid)->kids) node->kids.push_back(k);
            } else {
                node->kids.push_back(*kid);
            }
            if (i < s.size() && s[i] == ',') {
                ++i;
                continue;
            }
            break;
        }
        if (node->kids.size() == 1) return node->kids.front();
        return NodePtr(node);
    }

    Result<NodePtr> parse_atom() {
        if (i < s.size() && s[i] == '(') {
            std::size_t open = i++;
            auto inner = parse_or();
            if (!inner) return inner;
            if (i >= s.size() || s[i] != ')') return parse_fail("unbalanced '(' in version spec", at(open));
            ++i;
            return inner;
        }
        std::size_t start = i;
        if (i < s.size() && s[i] == '^') {
            while (i < s.size() && !(s[i] == '$' && (i + 1 == s.size() || std::string_view(",|)").find(s[i + 1]) != std::string_view::npos))) ++i;
            if (i < s.size()) ++i;
        } else {
            while (i < s.size() && std::string_view(",|()").find(s[i]) == std::string_view::npos) ++i;
        }
        if (i == start) {
            if (i < s.size()) return parse_fail(std::string("unexpected '") + s[i] + "' in version spec", at(i));
            return parse_fail("expected a version", at(i));
        }
        return clause(start, i);
    }

    Result<NodePtr> clause(std::size_t b, std::size_t e) {
        std::string c = s.substr(b, e - b);
        auto node = std::make_shared<Node>();
        node->source = c;
        auto version_at = [&](std::size_t off, std::string_view text) -> Result<Version> {
            auto v = Version::parse(text);
            if (!v) return parse_fail(v.error().message, at(b + off + v.error().offset));
            return v;
        };
        if (c.front() == '^' || c.back() == '$') {
            if (c.front() != '^' || c.back() != '$' || c.size() < 2)
                return parse_fail("version regex must start with '^' and end with '$'", at(b));
            try {
                node->rx = std::make_shared<const std::regex>(c, std::regex::ECMAScript);
            } catch (const std::regex_error&) {
                return parse_fail("invalid version regex", at(b));
            }
            node->op = Op::regex;
            return NodePtr(node);
        }
        if (std::string_view("=<>!~").find(c.front()) != std::string_view::npos) {
            std::size_t n = 1;
            if (c.size() > 1 && c[1] == '=') n = 2;
            std::string op = c.substr(0, n);
            if (op == "!" || op == "~") return parse_fail("invalid operator '" + op + "'", at(b));
            if (n < c.size() && std::string_view("=<>!~").find(c[n]) != std::string_view::npos)
                return parse_fail("invalid operator '" + c.substr(0, n + 1) + "'", at(b + n));
            std::string rest = c.substr(n);
            if (rest.empty()) return parse_fail("missing version after '" + op + "'", at(e));
            bool star = false;
            if (rest.size() >= 2 && rest.ends_with(".*")) {
                rest.resize(rest.size() - 2), star = true;
            } else if (rest.size() >= 2 && rest.back() == '*') {
                rest.pop_back(), star = true;
            }
            if (star && op == "~=") return parse_fail("invalid operator '~=' with '.*'", at(e - 1));
            auto v = version_at(n, rest);
            if (!v) return tl::unexpected(v.error());
            node->version = *v;
            if (op == "=") node->op = Op::starts_with;
            else if (op == "==") node->op = Op::eq;
            else if (op == "!=") node->op = star ? Op::not_starts_with : Op::ne;
            else if (op == "<") node->op = Op::lt;
            else if (op == "<=") node->op = Op::le;
            else if (op == ">") node->op = Op::gt;
            else if (op == ">=") node->op = Op::ge;
            else {
                node->op = Op::compatible;
                if (v->components().size() < 3)
                    return parse_fail("'~=' needs at least two version components", at(b + n));
                std::string t = v->to_string();
                std::size_t cut = std::min(t.find('+'), t.size());
                std::size_t sep = t.find_last_of("._-", cut - 1);
                auto p = Version::parse(t.substr(0, sep));
                if (!p) return parse_fail(p.error().message, at(b + n));
                node->prefix = *p;
            }
            return NodePtr(node);
        }
        if (c == "*") return NodePtr(node);
        std::size_t last = c.find_last_not_of('*');
        if (c.find('*') < last) {  // a '*' that is not trailing: glob over the version string
            std::string rx = "^(?:";
            for (char ch : c) {
                if (ch == '*') rx += ".*";
                else if (std::string_view(".+?()[]{}\\^$|").find(ch) != std::string_view::npos) rx += std::string("\\") + ch;
                else rx += ch;
            }
            node->rx = std::make_shared<const std::regex>(rx + ")$", std::regex::ECMAScript);
            node->op = Op::regex;
            return NodePtr(node);
        }
        if (c.back() == '*') {
            std::string rest = c.substr(0, last + 1);
            if (rest.ends_with(".")) rest.pop_back();
            auto v = version_at(0, rest);
            if (!v) return tl::unexpected(v.error());
            node->op = Op::starts_with;
            node->version = *v;
            return NodePtr(node);
        }
        auto v = version_at(0, c);
        if (!v) return tl::unexpected(v.error());
        node->op = Op::eq;
        node->version = *v;
        return NodePtr(node);
    }
};

bool eval(const Node& n, const Version& v) {
    switch (n.type) {
        case Node::Type::all:
            return std::all_of(n.kids.begin(), n.kids.end(), [&](const NodePtr& k) { return eval(*k, v); });
        case Node::Type::one:
            return std::any_of(n.kids.begin(), n.kids.end(), [&](const NodePtr& k) { return eval(*k, v); });
        case Node::Type::leaf: break;
    }
    switch (n.op) {
        case Op::any: return true;
        case Op::eq: return v == n.version;
        case Op::ne: return v != n.version;
        case Op::lt: return v < n.version;
        case Op::le: return v <= n.version;
        case Op::gt: return v > n.version;
        case Op::ge: return v >= n.version;
        case Op::starts_with: return v.starts_with(n.version);
        case Op::not_starts_with: return !v.starts_with(n.version);
        case Op::compatible: return v >= n.version && v.starts_with(n.prefix);
        case Op::regex: return std::regex_match(v.to_string(), *n.rx);
    }
    return false;
}

std::string print(const Node& n) {
    std::string out;
    if (n.type != Node::Type::leaf) {
        for (const auto& k : n.kids) {
            if (!out.empty()) out += n.type == Node::Type::all ? "," : "|";
            bool paren = n.type == Node::Type::all && k->type == Node::Type::one;
            out += paren ? "(" + print(*k) + ")" : print(*k);
        }
        return out;
    }
    const std::string& v = n.version.to_string();
    switch (n.op) {
        case Op::any: return "*";
        case Op::eq: return "==" + v;
        case Op::ne: return "!=" + v;
        case Op::lt: return "<" + v;
        case Op::le: return "<=" + v;
        case Op::gt: return ">" + v;
        case Op::ge: return ">=" + v;
        case Op::starts_with: return v + ".*";
        case Op::not_starts_with: return "!=" + v + ".*";
        case Op::compatible: return "~=" + v;
        case Op::regex: return n.source;
    }
    return out;
}

}  // namespace

VersionSpec::VersionSpec() : root_(std::make_shared<const Node>()) {}

Result<VersionSpec> VersionSpec::parse(std::string_view text) {
    SpecParser p;
    for (std::size_t k = 0; k < text.size(); ++k) {
        if (text[k] == ' ' || text[k] == '\t') continue;
        p.s.push_back(text[k]);
        p.pos.push_back(k);
    }
    p.pos.push_back(text.size());
    if (p.s.empty()) return parse_fail("empty version spec", text.size());
    auto root = p.parse_or();
    if (!root) return tl::unexpected(root.error());
    if (p.i < p.s.size()) return parse_fail(std::string("unexpected '") + p.s[p.i] + "' in version spec", p.at(p.i));
    VersionSpec spec;
    spec.root_ = *root;
    return spec;
}

bool VersionSpec::contains(const Version& v) const { return eval(*root_, v); }
std::string VersionSpec::to_string() const { return print(*root_); }
bool VersionSpec::is_any() const { return root_->type == Node::Type::leaf && root_->op == Op::any; }

}  // namespace ocibuild::conda
