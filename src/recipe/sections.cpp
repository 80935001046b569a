// [image], [base] and [config].
#include <algorithm>
#include <array>
#include <charconv>
#include <system_error>

#include "ocibuild/registry/reference.hpp"
#include "reader.hpp"

namespace ocibuild::recipe::detail {

namespace fs = std::filesystem;

namespace {

bool valid_tag(std::string_view t) {
    if (t.empty() || t.size() > 128) return false;
    for (std::size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  (i > 0 && (c == '.' || c == '-'));
        if (!ok) return false;
    }
    return true;
}

std::string bad_reference(std::string_view text, const ParseError& e) {
    return "bad reference " + quote(text) + ": " + e.message;
}

// Parses a decimal number made only of digits; nullopt on anything else.
std::optional<std::uint64_t> decimal(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

// "SIGTERM", "term", "15" → "SIGTERM", "SIGTERM", "15"; nullopt when not a signal.
std::optional<std::string> normal_signal(std::string_view s) {
    if (auto n = decimal(s)) {
        if (*n >= 1 && *n <= 64) return std::to_string(*n);
        return std::nullopt;
    }
    static constexpr std::array<std::string_view, 33> names = {
        "HUP",  "INT",  "QUIT", "ILL",  "TRAP", "ABRT", "IOT",    "BUS",  "FPE",   "KILL",  "USR1",
        "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP",  "TSTP",  "TTIN",
        "TTOU", "URG",  "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",  "POLL",  "PWR",   "SYS"};
    std::string name = upper(s);
    if (name.starts_with("SIG")) name.erase(0, 3);
    if (std::find(names.begin(), names.end(), name) != names.end()) return "SIG" + name;
    for (std::string_view rt : {"RTMIN", "RTMAX"}) {
        if (name == rt) return "SIG" + name;
        if (name.starts_with(rt) && name.size() > rt.size() + 1 && name[rt.size()] == (rt == "RTMIN" ? '+' : '-')) {
            auto n = decimal(std::string_view(name).substr(rt.size() + 1));
            if (n && *n >= 1 && *n <= 30) return "SIG" + name;
        }
    }
    return std::nullopt;
}

// "80", "80/udp" → "80/tcp", "80/udp"; nullopt when malformed.
std::optional<std::string> normal_port(std::string_view s) {
    auto slash = s.find('/');
    std::string_view number = s.substr(0, slash);
    std::string proto = slash == std::string_view::npos ? "tcp" : std::string(s.substr(slash + 1));
    if (proto != "tcp" && proto != "udp" && proto != "sctp") return std::nullopt;
    auto n = decimal(number);
    if (!n || *n < 1 || *n > 65535) return std::nullopt;
    return std::to_string(*n) + "/" + proto;
}

const std::string port_help = ": expected PORT or PORT/PROTO, with PORT 1-65535 and PROTO tcp, udp or sctp";

// entrypoint / cmd: an array of strings; a lone string gets a hint.
std::optional<std::vector<std::string>> argv_list(Reader& r, const toml::node& n, std::string_view key) {
    if (const auto* s = n.as_string()) {
        r.error(r.at(n), subject(key, "[config]") +
                             " must be an array of strings, not a string; for a shell command write [\"/bin/sh\", "
                             "\"-c\", " +
                             quote(s->get()) + "]");
        return std::nullopt;
    }
    return r.strings(n, key, "[config]", false);
}

}  // namespace

void parse_image(Reader& r, const toml::node& n, ImageSection& out) {
    const auto* t = r.table(n, subject("image", "the top level"));
    if (t == nullptr) return;
    r.check_keys(*t, "[image]", {"name", "tags", "platform"});

    if (const auto* v = t->get("name")) {
        if (auto name = r.string(*v, subject("name", "[image]"))) {
            auto ref = registry::Reference::parse(*name, false);
            if (!ref) {
                r.error(r.at(*v), bad_reference(*name, ref.error()));
            } else if (!ref->tag.empty() || !ref->digest.empty()) {
                r.error(r.at(*v), subject("name", "[image]") + " must be a repository without a tag or digest, not " +
                                      quote(*name) + "; list tags in \"tags\"");
            } else {
                out.name = ref->name();
            }
        }
    }

    if (const auto* v = t->get("tags")) {
        if (auto items = r.string_items(*v, "tags", "[image]", false)) {
            for (auto& item : *items) {
                if (!valid_tag(item.value)) {
                    r.error(item.pos, "bad tag " + quote(item.value) +
                                          " in [image].tags: use 1-128 letters, digits, \"_\", \".\" and \"-\", "
                                          "not starting with \".\" or \"-\"");
                } else if (std::find(out.tags.begin(), out.tags.end(), item.value) != out.tags.end()) {
                    r.error(item.pos, "duplicate tag " + quote(item.value) + " in [image].tags");
                } else {
                    out.tags.push_back(std::move(item.value));
                }
            }
        }
    }

    if (const auto* v = t->get("platform")) {
        if (auto text = r.string(*v, subject("platform", "[image]"))) {
            auto p = oci::Platform::parse(*text);
            if (p)
                out.platform = *p;
            else
                r.error(r.at(*v), "bad platform " + quote(*text) + ": " + p.error().message);
        }
    }
}

void parse_base(Reader& r, const toml::node& n, const fs::path& directory, BaseSpec& out) {
    const auto* t = r.table(n, subject("base", "the top level"));
    if (t == nullptr) return;
    r.check_keys(*t, "[base]", {"ref"});
    const auto* v = t->get("ref");
    if (v == nullptr) {
        r.error(r.at(*t), "[base] needs \"ref\"");
        return;
    }
    auto ref = r.string(*v, subject("ref", "[base]"));
    if (!ref) return;
    out.ref = *ref;
    out.pos = r.at(*v);
    const std::string_view text = *ref;
    auto fail = [&](const std::string& why) { r.error(out.pos, "bad base " + quote(text) + ": " + why); };

    if (text == "scratch") {
        out.kind = BaseSpec::Kind::scratch;
        return;
    }
    for (std::string_view transport : {"docker-archive:", "docker-daemon:", "containers-storage:", "dir:", "docker://"}) {
        if (text.starts_with(transport)) {
            if (transport == "docker://")
                fail("write the registry reference without \"docker://\"");
            else
                fail(quote(transport) + " is not supported; use \"scratch\", \"oci:DIR[:TAG]\", "
                                        "\"oci-archive:FILE[:TAG]\" or a registry reference");
            return;
        }
    }
    const bool layout = text.starts_with("oci:");
    const bool archive = text.starts_with("oci-archive:");
    if (layout || archive) {
        out.kind = layout ? BaseSpec::Kind::oci_layout : BaseSpec::Kind::oci_archive;
        std::string_view rest = text.substr(layout ? 4 : 12);
        std::string_view path = rest;
        if (auto colon = rest.rfind(':');
            colon != std::string_view::npos && rest.find('/', colon) == std::string_view::npos) {
            path = rest.substr(0, colon);
            out.tag = rest.substr(colon + 1);
            if (out.tag.empty()) return fail("empty tag after \":\"");
        }
        if (path.empty())
            return fail(layout ? "expected oci:DIR[:TAG], a directory holding an OCI layout"
                               : "expected oci-archive:FILE[:TAG], a tar file holding an OCI layout");
        out.path = resolve(directory, path);
        if (!exists_here(out.path)) {
            r.error(out.pos, "missing file: " + quote(path) + " (looked for " + out.path.string() + ")");
            return;
        }
        std::error_code ec;
        const bool is_dir = fs::is_directory(out.path, ec);
        if (layout && !is_dir)
            fail(quote(path) + " is not a directory; use \"oci-archive:" + std::string(rest) + "\" for an archive");
        else if (archive && is_dir)
            fail(quote(path) + " is a directory; use \"oci:" + std::string(rest) + "\" for an OCI layout");
        return;
    }
    out.kind = BaseSpec::Kind::registry;
    auto parsed = registry::Reference::parse(text);
    if (!parsed) return r.error(out.pos, bad_reference(text, parsed.error()));
    out.tag = parsed->to_string();
}

void parse_config(Reader& r, const toml::node& n, ConfigSection& out) {
    const auto* t = r.table(n, subject("config", "the top level"));
    if (t == nullptr) return;
    static constexpr std::array<std::string_view, 10> keys = {
        "env", "workdir", "entrypoint", "cmd", "user", "labels", "ports", "volumes", "stop_signal", "author"};
    r.check_keys(*t, "[config]", keys);
    const std::string_view where = "[config]";

    if (const auto* v = t->get("env")) env_table(r, *v, where, out.env);
    if (const auto* v = t->get("workdir")) out.workdir = r.absolute_path(*v, subject("workdir", where));
    if (const auto* v = t->get("entrypoint")) out.entrypoint = argv_list(r, *v, "entrypoint");
    if (const auto* v = t->get("cmd")) out.cmd = argv_list(r, *v, "cmd");
    if (const auto* v = t->get("user")) out.user = r.nonempty_string(*v, subject("user", where));
    if (const auto* v = t->get("labels")) {
        if (auto entries = r.string_table(*v, "labels", where)) {
            for (auto& e : *entries) {
                if (e.key.empty())
                    r.error(e.key_pos, "empty label name in [config].labels");
                else
                    out.labels[e.key] = e.value;
            }
        }
    }
    if (const auto* v = t->get("ports")) {
        if (const auto* arr = v->as_array()) {
            for (std::size_t i = 0; i < arr->size(); ++i) {
                const toml::node& e = *arr->get(i);
                std::optional<std::string> port;
                if (const auto* s = e.as_string()) {
                    port = normal_port(s->get());
                    if (!port) r.error(r.at(e), "bad port " + quote(s->get()) + " in [config].ports" + port_help);
                } else if (const auto* num = e.as_integer()) {
                    if (num->get() >= 1 && num->get() <= 65535)
                        port = std::to_string(num->get()) + "/tcp";
                    else
                        r.error(r.at(e), "bad port " + std::to_string(num->get()) + " in [config].ports" + port_help);
                } else {
                    r.wrong_type(e, item_subject(i + 1, "ports", where), "a string or an integer");
                }
                if (!port) continue;
                if (std::find(out.ports.begin(), out.ports.end(), *port) != out.ports.end())
                    r.error(r.at(e), "duplicate port " + quote(*port) + " in [config].ports");
                else
                    out.ports.push_back(std::move(*port));
            }
        } else {
            r.wrong_type(*v, subject("ports", where), "an array of strings or integers");
        }
    }
    if (const auto* v = t->get("volumes")) {
        if (auto items = r.string_items(*v, "volumes", where, false)) {
            for (std::size_t i = 0; i < items->size(); ++i) {
                auto& item = (*items)[i];
                if (!item.value.starts_with('/'))
                    r.error(item.pos, item_subject(i + 1, "volumes", where) + " must be an absolute path, not " +
                                          quote(item.value));
                else
                    out.volumes.push_back(std::move(item.value));
            }
        }
    }
    if (const auto* v = t->get("stop_signal")) {
        std::optional<std::string> written;
        if (const auto* s = v->as_string())
            written = s->get();
        else if (const auto* num = v->as_integer())
            written = std::to_string(num->get());
        else
            r.wrong_type(*v, subject("stop_signal", where), "a string");
        if (written) {
            out.stop_signal = normal_signal(*written);
            if (!out.stop_signal)
                r.error(r.at(*v), subject("stop_signal", where) +
                                      " must be a signal name like \"SIGTERM\" or a number 1-64, not " +
                                      quote(*written));
        }
    }
    if (const auto* v = t->get("author")) {
        if (auto s = r.string(*v, subject("author", where))) out.author = *s;
    }
}

namespace {
bool is_channel_url(std::string_view s) {
    for (std::string_view scheme : {"https://", "http://", "file:///"})
        if (s.starts_with(scheme) && s.size() > scheme.size()) return true;
    return false;
}
constexpr std::string_view url_help = " (an http://, https:// or file:/// URL)";
}  // namespace

void parse_conda_section(Reader& r, const toml::node& n, CondaSection& out) {
    const auto* t = r.table(n, subject("conda", "the top level"));
    if (t == nullptr) return;
    const std::string_view where = "[conda]";
    r.check_keys(*t, where, {"channel_alias", "mirrors"});
    if (const auto* v = t->get("channel_alias")) {
        if (auto alias = r.string(*v, subject("channel_alias", where))) {
            if (!is_channel_url(*alias))
                r.error(r.at(*v), subject("channel_alias", where) + " must be a URL" + std::string(url_help) +
                                      ", not " + quote(*alias));
            else
                out.channel_alias = *alias;
        }
    }
    if (const auto* v = t->get("mirrors")) {
        const auto* mirrors = r.table(*v, subject("mirrors", where),
                                      "a table like { \"https://conda.anaconda.org\" = [\"https://mirror.example\"] }");
        if (mirrors == nullptr) return;
        const std::string table = "[conda].mirrors";
        for (auto&& [k, m] : *mirrors) {
            const std::string from(k.str());
            if (!is_channel_url(from)) {
                r.error(r.at(k), "mirrored prefix " + quote(from) + " in " + table + " must be a URL" +
                                     std::string(url_help));
                continue;
            }
            std::vector<Item> targets;
            if (const auto* s = m.as_string()) {
                targets.push_back(Item{s->get(), r.at(m)});
            } else if (m.is_array()) {
                auto items = r.string_items(m, from, table, true);
                if (!items) continue;
                if (items->empty()) r.error(r.at(m), subject(from, table) + " must not be empty");
                targets = std::move(*items);
            } else {
                r.wrong_type(m, subject(from, table), "a URL or an array of URLs");
                continue;
            }
            for (auto& target : targets) {
                if (!is_channel_url(target.value))
                    r.error(target.pos, "mirror " + quote(target.value) + " of " + quote(from) + " in " + table +
                                            " must be a URL" + std::string(url_help));
                else
                    out.mirrors[from].push_back(std::move(target.value));
            }
        }
    }
}

}  // namespace ocibuild::recipe::detail
