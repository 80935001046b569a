// [[step]]: copy, run, conda.
#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <system_error>

#include "ocibuild/conda/match_spec.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/conda/version.hpp"
#include "reader.hpp"

namespace ocibuild::recipe::detail {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, 3> kinds = {"copy", "run", "conda"};
constexpr std::array<std::string_view, 9> run_options = {"shell", "env", "workdir", "user", "network",
                                                         "cache", "bind", "timeout", "shm_size_mb"};
constexpr std::array<std::string_view, 10> run_keys = {"run", "shell", "env", "workdir", "user", "network",
                                                       "cache", "bind", "timeout", "shm_size_mb"};
constexpr std::array<std::string_view, 12> all_keys = {"copy", "run", "conda", "shell", "env", "workdir", "user",
                                                       "network", "cache", "bind", "timeout", "shm_size_mb"};

// The highest id a uid or gid may be: (uid_t)-1 means "unchanged" to chown(2).
constexpr std::uint64_t max_id = std::numeric_limits<std::uint32_t>::max() - 1;

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& a, std::string_view s) {
    return std::find(a.begin(), a.end(), s) != a.end();
}

std::string in_base(std::int64_t v, int base) {
    char buf[72];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, base);
    return std::string(buf, ec == std::errc{} ? end : buf);
}

std::optional<std::uint64_t> digits(std::string_view s, int base) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<std::uint32_t> parse_mode(Reader& r, const toml::node& v, std::string_view where) {
    const std::string subj = subject("mode", where);
    if (const auto* i = v.as_integer()) {
        const std::int64_t n = i->get();
        // The integer format is a two-bit field of the flags, not a set of bits.
        const auto format = i->flags() & toml::value_flags::format_as_hexadecimal;
        if (format != toml::value_flags::format_as_octal && n != 0) {
            std::string written = format == toml::value_flags::format_as_hexadecimal ? "0x" + in_base(n, 16)
                                  : format == toml::value_flags::format_as_binary    ? "0b" + in_base(n, 2)
                                                                                     : in_base(n, 10);
            r.error(r.at(v), subj + " must be octal, like 0o755 or \"0755\", not " + written);
            return std::nullopt;
        }
        if (n < 0 || n > 07777) {
            r.error(r.at(v), subj + " must be at most 0o7777, not 0o" + in_base(n, 8));
            return std::nullopt;
        }
        return static_cast<std::uint32_t>(n);
    }
    if (const auto* s = v.as_string()) {
        auto n = digits(s->get(), 8);
        if (!n) {
            r.error(r.at(v), subj + " must be octal, like 0o755 or \"0755\", not " + quote(s->get()));
            return std::nullopt;
        }
        if (*n > 07777) {
            r.error(r.at(v), subj + " must be at most 0o7777, not " + quote(s->get()));
            return std::nullopt;
        }
        return static_cast<std::uint32_t>(*n);
    }
    r.wrong_type(v, subj, "an octal integer like 0o755 or a string like \"0755\"");
    return std::nullopt;
}

std::optional<Owner> parse_owner(Reader& r, const toml::node& v, std::string_view where) {
    const std::string subj = subject("owner", where);
    if (const auto* i = v.as_integer()) {
        if (i->get() < 0 || static_cast<std::uint64_t>(i->get()) > max_id) {
            r.error(r.at(v), subj + " must be a uid from 0 to " + std::to_string(max_id) + ", not " +
                                 std::to_string(i->get()));
            return std::nullopt;
        }
        auto id = static_cast<std::uint32_t>(i->get());
        return Owner{id, id};
    }
    if (const auto* s = v.as_string()) {
        const std::string_view text = s->get();
        auto colon = text.find(':');
        auto uid = digits(text.substr(0, colon), 10);
        auto gid = colon == std::string_view::npos ? uid : digits(text.substr(colon + 1), 10);
        if (!uid || !gid || *uid > max_id || *gid > max_id) {
            r.error(r.at(v), subj + " must be \"uid:gid\" or \"uid\" with numeric ids, not " + quote(text));
            return std::nullopt;
        }
        return Owner{static_cast<std::uint32_t>(*uid), static_cast<std::uint32_t>(*gid)};
    }
    r.wrong_type(v, subj, "a string like \"1000:1000\" or an integer uid");
    return std::nullopt;
}

CopyStep parse_copy(Reader& r, const toml::node& n, std::string_view step, const fs::path& directory) {
    CopyStep c;
    const auto* t = r.table(n, subject("copy", step), "a table like { from = \"src\", to = \"/dst\" }");
    if (t == nullptr) return c;
    const std::string where = std::string(step) + ".copy";
    r.check_keys(*t, where, {"from", "to", "mode", "owner"});

    if (const auto* v = t->get("from")) {
        if (auto from = r.nonempty_string(*v, subject("from", where))) {
            fs::path rel = fs::path(*from).lexically_normal();
            if (rel.is_absolute() || (!rel.empty() && *rel.begin() == "..")) {
                r.error(r.at(*v), subject("from", where) + " must be a path inside the recipe directory, not " +
                                      quote(*from));
            } else {
                c.from = *from;
                c.source = resolve(directory, *from);
                if (!exists_here(c.source))
                    r.error(r.at(*v), "missing file: " + quote(*from) + " (looked for " + c.source.string() + ")");
            }
        }
    } else {
        r.error(r.at(*t), where + " needs \"from\"");
    }
    if (const auto* v = t->get("to")) {
        if (auto to = r.absolute_path(*v, subject("to", where))) c.to = *to;
    } else {
        r.error(r.at(*t), where + " needs \"to\"");
    }
    if (const auto* v = t->get("mode")) c.mode = parse_mode(r, *v, where);
    if (const auto* v = t->get("owner")) c.owner = parse_owner(r, *v, where);
    return c;
}

std::optional<std::int64_t> positive_integer(Reader& r, const toml::node& v, std::string_view subj, std::int64_t max) {
    const auto* i = v.as_integer();
    if (i == nullptr) {
        r.wrong_type(v, subj, "a positive integer");
        return std::nullopt;
    }
    if (i->get() <= 0 || i->get() > max) {
        r.error(r.at(v), std::string(subj) + " must be from 1 to " + std::to_string(max) + ", not " +
                             std::to_string(i->get()));
        return std::nullopt;
    }
    return i->get();
}

void parse_binds(Reader& r, const toml::node& n, std::string_view where, const fs::path& directory, RunStep& run) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
        r.wrong_type(n, subject("bind", where), "an array of tables like { from = \"file\", to = \"/path\" }");
        return;
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        const auto* t = r.table(e, item_subject(i + 1, "bind", where), "a table like { from = \"file\", to = \"/path\" }");
        if (t == nullptr) continue;
        const std::string inner = std::string(where) + ".bind";
        r.check_keys(*t, inner, {"from", "to"});
        RunBind b;
        if (const auto* v = t->get("from")) {
            if (auto from = r.nonempty_string(*v, subject("from", inner))) {
                fs::path rel = fs::path(*from).lexically_normal();
                if (rel.is_absolute() || (!rel.empty() && *rel.begin() == "..")) {
                    r.error(r.at(*v), subject("from", inner) + " must be a path inside the recipe directory, not " +
                                          quote(*from));
                } else {
                    b.from = *from;
                    b.source = resolve(directory, *from);
                    if (!exists_here(b.source))
                        r.error(r.at(*v), "missing file: " + quote(*from) + " (looked for " + b.source.string() + ")");
                }
            }
        } else {
            r.error(r.at(*t), inner + " needs \"from\"");
        }
        if (const auto* v = t->get("to")) {
            if (auto to = r.absolute_path(*v, subject("to", inner))) b.to = *to;
        } else {
            r.error(r.at(*t), inner + " needs \"to\"");
        }
        run.binds.push_back(std::move(b));
    }
}

RunStep parse_run(Reader& r, const toml::table& t, std::string_view where, const fs::path& directory) {
    RunStep run;
    run.shell = {"/bin/sh", "-c"};
    run.network = "host";
    const toml::node& v = *t.get("run");
    const std::string subj = subject("run", where);
    bool list_form = false;
    if (const auto* s = v.as_string()) {
        if (s->get().find_first_not_of(" \t\r\n") == std::string::npos)
            r.error(r.at(v), subj + " must not be empty");
        run.command = s->get();
    } else if (v.is_array()) {
        list_form = true;
        if (auto argv = r.strings(v, "run", where, false)) {
            if (argv->empty()) r.error(r.at(v), subj + " must not be empty");
            run.argv = std::move(*argv);
        }
    } else {
        r.wrong_type(v, subj, "a string or an array of strings");
    }

    if (const auto* s = t.get("shell")) {
        if (list_form) {
            r.error(r.at(*s), subject("shell", where) + " only applies when \"run\" is a string");
        } else if (auto shell = r.strings(*s, "shell", where, true)) {
            if (shell->empty())
                r.error(r.at(*s), subject("shell", where) + " must not be empty");
            else
                run.shell = std::move(*shell);
        }
    }
    if (const auto* e = t.get("env")) env_table(r, *e, where, run.env);
    if (const auto* w = t.get("workdir")) {
        if (auto dir = r.absolute_path(*w, subject("workdir", where))) run.workdir = *dir;
    }
    if (const auto* u = t.get("user")) {
        if (auto user = r.nonempty_string(*u, subject("user", where))) run.user = *user;
    }
    if (const auto* n = t.get("network")) {
        if (auto net = r.string(*n, subject("network", where))) {
            if (*net == "host" || *net == "none")
                run.network = *net;
            else
                r.error(r.at(*n), subject("network", where) + " must be \"host\" or \"none\", not " + quote(*net));
        }
    }
    if (const auto* c = t.get("cache")) {
        if (auto items = r.string_items(*c, "cache", where, true)) {
            for (auto& item : *items) {
                if (item.value.empty() || item.value.front() != '/')
                    r.error(item.pos, item_subject(run.caches.size() + 1, "cache", where) + " must be an absolute path, not " +
                                          quote(item.value));
                else
                    run.caches.push_back(fs::path(item.value).lexically_normal().string());
            }
        }
    }
    if (const auto* b = t.get("bind")) parse_binds(r, *b, where, directory, run);
    if (const auto* v = t.get("timeout")) {
        if (auto secs = positive_integer(r, *v, subject("timeout", where), 7 * 24 * 3600))
            run.timeout_seconds = static_cast<int>(*secs);
    }
    if (const auto* v = t.get("shm_size_mb")) {
        if (auto mb = positive_integer(r, *v, subject("shm_size_mb", where), 1 << 20))
            run.shm_bytes = static_cast<std::uint64_t>(*mb) << 20;
    }
    if (!list_form) {
        run.argv = run.shell;
        run.argv.push_back(run.command);
    }
    return run;
}

constexpr std::array<std::string_view, 5> virtual_package_names = {"__archspec", "__cuda", "__cuda_arch", "__glibc",
                                                                    "__linux"};

void parse_virtual_packages(Reader& r, const toml::node& n, std::string_view where, CondaStep& c) {
    auto entries = r.string_table(n, "virtual_packages", where);
    if (!entries) return;
    const std::string table = std::string(where) + ".virtual_packages";
    for (auto& e : *entries) {
        if (!e.key.starts_with("__")) {
            std::string message = "virtual package " + quote(e.key) + " in " + table + " must start with \"__\"";
            if (auto s = suggest("__" + e.key, virtual_package_names)) message += "; did you mean " + quote(*s) + "?";
            r.error(e.key_pos, message);
            continue;
        }
        if (e.key == "__unix") {
            r.error(e.key_pos, "virtual package \"__unix\" in " + table + " cannot be overridden: the platform sets it");
            continue;
        }
        if (std::find(virtual_package_names.begin(), virtual_package_names.end(), e.key) ==
            virtual_package_names.end()) {
            if (auto s = suggest(e.key, virtual_package_names)) {
                r.error(e.key_pos, "unknown virtual package " + quote(e.key) + " in " + table + "; did you mean " +
                                       quote(*s) + "?");
                continue;
            }
        }
        if (e.value.empty()) {  // "" removes the package
            c.virtual_packages[e.key] = e.value;
            continue;
        }
        if (e.key == "__archspec") {  // the microarchitecture name, e.g. "x86_64_v3": a build string
            const auto bad = std::find_if(e.value.begin(), e.value.end(), [](char ch) {
                return !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                         ch == '_' || ch == '-' || ch == '.');
            });
            if (bad != e.value.end()) {
                r.error(r.in_string(e.value_pos, static_cast<std::size_t>(bad - e.value.begin())),
                        "bad microarchitecture " + quote(e.value) + " for \"__archspec\" in " + table +
                            " (like \"x86_64_v3\" or \"skylake\")");
                continue;
            }
        } else if (auto v = conda::Version::parse(e.value); !v) {
            r.error(r.in_string(e.value_pos, v.error().offset),
                    "bad version " + quote(e.value) + " for " + quote(e.key) + " in " + table + ": " +
                        v.error().message);
            continue;
        }
        c.virtual_packages[e.key] = e.value;
    }
}

CondaStep parse_conda(Reader& r, const toml::node& n, std::string_view step) {
    CondaStep c;
    const auto* t =
        r.table(n, subject("conda", step), "a table like { prefix = \"/opt/conda\", packages = [\"python\"] }");
    if (t == nullptr) return c;
    const std::string where = std::string(step) + ".conda";
    r.check_keys(*t, where, {"prefix", "channels", "packages", "virtual_packages", "channel_priority"});
    if (const auto* v = t->get("prefix")) {
        if (auto prefix = r.absolute_path(*v, subject("prefix", where))) {
            const std::string normal = fs::path(*prefix).lexically_normal().string();
            if (normal == "/" || normal == "//")
                r.error(r.at(*v), subject("prefix", where) + " must be a folder below /, like \"/opt/conda\"");
            else
                c.prefix = *prefix;
        }
    } else {
        r.error(r.at(*t), where + " needs \"prefix\"");
    }
    if (const auto* v = t->get("channels")) {
        if (auto channels = r.strings(*v, "channels", where, true)) c.channels = std::move(*channels);
    }
    if (const auto* v = t->get("packages")) {
        c.packages_pos = r.at(*v);
        if (auto packages = r.string_items(*v, "packages", where, true)) {
            if (packages->empty()) r.error(r.at(*v), subject("packages", where) + " must not be empty");
            for (std::size_t i = 0; i < packages->size(); ++i) {
                auto& item = (*packages)[i];
                if (auto spec = conda::MatchSpec::parse(item.value); !spec) {
                    r.error(r.in_string(item.pos, spec.error().offset),
                            "bad package spec " + quote(item.value) + " (" + item_subject(i + 1, "packages", where) +
                                "): " + spec.error().message);
                }
                c.packages.push_back(std::move(item.value));
            }
        }
    } else {
        r.error(r.at(*t), where + " needs \"packages\"");
    }
    if (const auto* v = t->get("virtual_packages")) parse_virtual_packages(r, *v, where, c);
    if (const auto* v = t->get("channel_priority")) {
        if (auto priority = r.string(*v, subject("channel_priority", where))) {
            if (conda::parse_channel_priority(*priority))
                c.channel_priority = *priority;
            else
                r.error(r.at(*v), subject("channel_priority", where) +
                                      " must be \"strict\", \"flexible\" or \"disabled\", not " + quote(*priority));
        }
    }
    return c;
}

void parse_step(Reader& r, const toml::table& t, std::size_t index, const fs::path& directory,
                std::vector<Step>& out) {
    const std::string where = "[[step]] #" + std::to_string(index);
    std::vector<std::string_view> present;
    for (auto k : kinds)
        if (t.contains(k)) present.push_back(k);
    const std::string_view kind = present.size() == 1 ? present.front() : std::string_view{};

    for (auto&& [k, v] : t) {
        const std::string_view name = k.str();
        if (contains(kinds, name)) continue;
        if (contains(run_options, name)) {
            if (kind == "copy" || kind == "conda")
                r.error(r.at(k), subject(name, where) + " only applies to run steps");
            continue;
        }
        if (kind == "run")
            r.unknown_key(k, where, run_keys);
        else if (kind.empty())
            r.unknown_key(k, where, all_keys);
        else
            r.unknown_key(k, where, std::span<const std::string_view>(&present.front(), 1));
    }

    Step step;
    step.pos = r.at(t);
    if (present.empty()) {
        r.error(step.pos, where + " needs one of \"copy\", \"run\", \"conda\"");
        return;
    }
    if (present.size() == 2) {
        r.error(step.pos, where + " has both " + quote(present[0]) + " and " + quote(present[1]) +
                              "; a step does one thing");
        return;
    }
    if (present.size() == 3) {
        r.error(step.pos, where + " has \"copy\", \"run\" and \"conda\"; a step does one thing");
        return;
    }
    if (kind == "copy")
        step.action = parse_copy(r, *t.get("copy"), where, directory);
    else if (kind == "run")
        step.action = parse_run(r, t, where, directory);
    else
        step.action = parse_conda(r, *t.get("conda"), where);
    out.push_back(std::move(step));
}

}  // namespace

void parse_steps(Reader& r, const toml::node& n, const fs::path& directory, std::vector<Step>& out) {
    const auto* arr = n.as_array();
    if (arr == nullptr) {
        r.wrong_type(n, subject("step", "the top level"), "an array of tables ([[step]])");
        return;
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        if (const auto* t = e.as_table())
            parse_step(r, *t, i + 1, directory, out);
        else
            r.wrong_type(e, item_subject(i + 1, "step", "the top level"), "a table");
    }
}

}  // namespace ocibuild::recipe::detail
