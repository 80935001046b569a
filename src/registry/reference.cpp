#include "ocibuild/registry/reference.hpp"

namespace ocibuild::registry {

namespace {
bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*. Returns the offset of the first bad
// character, or npos when the component is valid.
std::size_t check_component(std::string_view c) {
    if (c.empty()) return 0;
    if (!is_lower_alnum(c.front())) return 0;
    std::size_t i = 0;
    while (i < c.size()) {
        if (is_lower_alnum(c[i])) {
            ++i;
            continue;
        }
        // separator run
        std::size_t start = i;
        if (c[i] == '.') {
            ++i;
        } else if (c[i] == '_') {
            ++i;
            if (i < c.size() && c[i] == '_') ++i;
        } else if (c[i] == '-') {
            while (i < c.size() && c[i] == '-') ++i;
        } else {
            return i;
        }
        if (i >= c.size() || !is_lower_alnum(c[i])) return i < c.size() ? i : start;
    }
    return std::string_view::npos;
}

bool valid_tag(std::string_view t) {
    if (t.empty() || t.size() > 128) return false;
    auto ok = [](char c, bool first) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               (!first && (c == '.' || c == '-'));
    };
    for (std::size_t i = 0; i < t.size(); ++i)
        if (!ok(t[i], i == 0)) return false;
    return true;
}

bool looks_like_domain(std::string_view s) {
    return s.find('.') != std::string_view::npos || s.find(':') != std::string_view::npos || s == "localhost" ||
           s.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string_view::npos;
}

bool valid_domain(std::string_view d) {
    if (d.empty()) return false;
    auto colon = d.rfind(':');
    std::string_view host = d;
    if (colon != std::string_view::npos && d.front() != '[') {
        auto port = d.substr(colon + 1);
        if (port.empty() || port.size() > 5) return false;
        for (char c : port)
            if (c < '0' || c > '9') return false;
        host = d.substr(0, colon);
    }
    if (host.empty()) return false;
    if (host.front() == '[') return host.back() == ']' || d.find("]:") != std::string_view::npos;
    for (char c : host)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return false;
    return true;
}
}  // namespace

Result<Reference> Reference::parse(std::string_view text, bool default_tag) {
    if (text.empty()) return parse_fail("empty reference", 0);
    if (text.size() > 4096) return parse_fail("reference is too long", 0);
    Reference ref;
    std::string_view rest = text;

    if (auto at = rest.find('@'); at != std::string_view::npos) {
        auto d = core::Digest::parse(rest.substr(at + 1));
        if (!d) return parse_fail(d.error().message, at + 1 + d.error().offset);
        ref.digest = *d;
        rest = rest.substr(0, at);
    }
    // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
    auto last_slash = rest.rfind('/');
    auto colon = rest.rfind(':');
    if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
        auto tag = rest.substr(colon + 1);
        if (!valid_tag(tag))
            return parse_fail("bad tag \"" + std::string(tag) + "\" (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})",
                              colon + 1);
        ref.tag = tag;
        rest = rest.substr(0, colon);
    }

    std::size_t name_offset = 0;
    auto first_slash = rest.find('/');
    if (first_slash != std::string_view::npos && looks_like_domain(rest.substr(0, first_slash))) {
        auto domain = rest.substr(0, first_slash);
        if (!valid_domain(domain)) return parse_fail("bad registry host \"" + std::string(domain) + "\"", 0);
        ref.registry = domain;
        name_offset = first_slash + 1;
    } else {
        ref.registry = docker_hub;
    }
    if (ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io") ref.registry = docker_hub;

    std::string_view path = rest.substr(name_offset);
    if (path.empty()) return parse_fail("missing repository name", name_offset);
    std::size_t offset = name_offset;
    std::size_t components = 0;
    while (true) {
        auto slash = path.find('/');
        auto comp = path.substr(0, slash);
        if (auto bad = check_component(comp); bad != std::string_view::npos) {
            bool upper = bad < comp.size() && comp[bad] >= 'A' && comp[bad] <= 'Z';
            return parse_fail(upper ? "repository name must be lowercase"
                                    : "bad repository name component \"" + std::string(comp) + "\"",
                              offset + bad);
        }
        ++components;
        if (slash == std::string_view::npos) break;
        offset += slash + 1;
        path = path.substr(slash + 1);
    }
    ref.repository = rest.substr(name_offset);
    if (ref.registry == docker_hub && components == 1) ref.repository = "library/" + ref.repository;
    if (ref.registry.size() + 1 + ref.repository.size() > 255)
        return parse_fail("repository name is longer than 255 characters", name_offset);
    if (ref.tag.empty() && ref.digest.empty() && default_tag) ref.tag = "latest";
    return ref;
}

std::string Reference::name() const { return registry + "/" + repository; }

std::string Reference::to_string() const {
    std::string s = name();
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest.str();
    return s;
}

std::string Reference::api_host() const { return registry == docker_hub ? "registry-1.docker.io" : registry; }

}  // namespace ocibuild::registry
