#include "ocibuild/build/lock.hpp"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::build {

namespace {
using core::Error;
using core::ErrorCategory;

// ---- writing --------------------------------------------------------------------------------

// A TOML basic string, escaped by toml++ (UTF-8 kept as it is, so the lock diffs well).
std::string toml_string(std::string_view s) {
    std::ostringstream out;
    out << toml::toml_formatter{toml::value<std::string>{std::string(s)}, toml::format_flags::allow_unicode_strings};
    return out.str();
}

// A bare key when TOML allows one, else a quoted key.
std::string key_text(std::string_view key) {
    bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
    return bare ? std::string(key) : toml_string(key);
}

struct Writer {
    std::string out;
    void str(std::string_view key, std::string_view value) { out += key_text(key) + " = " + toml_string(value) + "\n"; }
    void str_if(std::string_view key, std::string_view value) {
        if (!value.empty()) str(key, value);
    }
    void num(std::string_view key, std::uint64_t value) { out += key_text(key) + " = " + std::to_string(value) + "\n"; }
    void array(std::string_view key, const std::vector<std::string>& items) {
        if (items.empty()) {
            out += key_text(key) + " = []\n";
            return;
        }
        out += key_text(key) + " = [\n";
        for (const auto& item : items) out += "    " + toml_string(item) + ",\n";
        out += "]\n";
    }
};

std::string_view url_basename(std::string_view url) {
    auto slash = url.rfind('/');
    return slash == std::string_view::npos ? url : url.substr(slash + 1);
}

bool record_less(const conda::PackageRecord& a, const conda::PackageRecord& b) {
    return std::tie(a.name, a.version, a.build, a.subdir, a.url) < std::tie(b.name, b.version, b.build, b.subdir, b.url);
}

void write_package(Writer& w, const conda::PackageRecord& r) {
    w.out += "\n[[conda.package]]\n";
    w.str("name", r.name);
    w.str("version", r.version);
    w.str("build", r.build);
    w.num("build_number", r.build_number);
    w.str("subdir", r.subdir);
    w.str_if("noarch", r.noarch);
    w.str_if("channel", r.channel);
    w.str("url", r.url);
    if (r.fn != url_basename(r.url)) w.str("fn", r.fn);
    w.str_if("sha256", r.sha256);
    w.str_if("md5", r.md5);
    w.num("size", r.size);
    if (r.timestamp != 0) w.num("timestamp", r.timestamp);
    w.str_if("license", r.license);
    w.str_if("license_family", r.license_family);
    w.str_if("python_site_packages_path", r.python_site_packages_path);
    if (!r.track_features.empty()) w.array("track_features", r.track_features);
    w.array("depends", r.depends);
    w.array("constrains", r.constrains);
}

// ---- reading --------------------------------------------------------------------------------

class Reader {
public:
    explicit Reader(std::string source) : source_(std::move(source)) {}

    [[noreturn]] void fail(const toml::source_region& where, const std::string& message) const {
        throw Error(ErrorCategory::invalid_input, source_ + ":" + std::to_string(where.begin.line) + ":" +
                                                      std::to_string(where.begin.column) + ": " + message);
    }

    // Every key of `t` must be one of `allowed`.
    void check_keys(const toml::table& t, std::string_view where, std::initializer_list<std::string_view> allowed) const {
        for (auto&& [k, v] : t) {
            if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
                fail(k.source(), "unknown key \"" + std::string(k.str()) + "\" in " + std::string(where));
        }
    }

    const toml::node& need(const toml::table& t, std::string_view key, std::string_view where) const {
        const auto* n = t.get(key);
        if (n == nullptr) fail(t.source(), std::string(where) + " needs \"" + std::string(key) + "\"");
        return *n;
    }

    std::string string(const toml::node& n, std::string_view key) const {
        const auto* s = n.as_string();
        if (s == nullptr) fail(n.source(), "\"" + std::string(key) + "\" must be a string");
        return s->get();
    }
    std::string string(const toml::table& t, std::string_view key, std::string_view where) const {
        return string(need(t, key, where), key);
    }
    std::string optional_string(const toml::table& t, std::string_view key) const {
        const auto* n = t.get(key);
        return n == nullptr ? std::string() : string(*n, key);
    }

    std::uint64_t number(const toml::node& n, std::string_view key) const {
        const auto* i = n.as_integer();
        if (i == nullptr || i->get() < 0) fail(n.source(), "\"" + std::string(key) + "\" must be a non-negative integer");
        return static_cast<std::uint64_t>(i->get());
    }
    std::uint64_t optional_number(const toml::table& t, std::string_view key) const {
        const auto* n = t.get(key);
        return n == nullptr ? 0 : number(*n, key);
    }

    std::vector<std::string> strings(const toml::table& t, std::string_view key, bool required,
                                     std::string_view where) const {
        const auto* n = t.get(key);
        if (n == nullptr) {
            if (required) fail(t.source(), std::string(where) + " needs \"" + std::string(key) + "\"");
            return {};
        }
        const auto* a = n->as_array();
        if (a == nullptr) fail(n->source(), "\"" + std::string(key) + "\" must be an array of strings");
        std::vector<std::string> out;
        for (const auto& item : *a) out.push_back(string(item, key));
        return out;
    }

    const toml::table& table(const toml::node& n, std::string_view what) const {
        const auto* t = n.as_table();
        if (t == nullptr) fail(n.source(), std::string(what) + " must be a table");
        return *t;
    }

private:
    std::string source_;
};

conda::PackageRecord read_package(const Reader& r, const toml::table& t, std::string_view where) {
    r.check_keys(t, where,
                 {"name", "version", "build", "build_number", "subdir", "noarch", "channel", "url", "fn", "sha256",
                  "md5", "size", "timestamp", "license", "license_family", "python_site_packages_path",
                  "track_features", "depends", "constrains"});
    conda::PackageRecord p;
    p.name = r.string(t, "name", where);
    p.version = r.string(t, "version", where);
    p.build = r.string(t, "build", where);
    p.build_number = r.optional_number(t, "build_number");
    p.subdir = r.string(t, "subdir", where);
    p.noarch = r.optional_string(t, "noarch");
    p.channel = r.optional_string(t, "channel");
    p.url = r.string(t, "url", where);
    p.fn = t.contains("fn") ? r.optional_string(t, "fn") : std::string(url_basename(p.url));
    p.sha256 = r.optional_string(t, "sha256");
    p.md5 = r.optional_string(t, "md5");
    p.size = r.optional_number(t, "size");
    p.timestamp = r.optional_number(t, "timestamp");
    p.license = r.optional_string(t, "license");
    p.license_family = r.optional_string(t, "license_family");
    p.python_site_packages_path = r.optional_string(t, "python_site_packages_path");
    p.track_features = r.strings(t, "track_features", false, where);
    p.depends = r.strings(t, "depends", false, where);
    p.constrains = r.strings(t, "constrains", false, where);
    auto hex_ok = [](const std::string& s, std::size_t n) {
        return s.empty() || (s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
                                 return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                             }));
    };
    if (!hex_ok(p.sha256, 64)) r.fail(t.get("sha256")->source(), "\"sha256\" must be 64 lower-case hex digits");
    if (!hex_ok(p.md5, 32)) r.fail(t.get("md5")->source(), "\"md5\" must be 32 lower-case hex digits");
    return p;
}

conda::VirtualPackage parse_virtual_package(const Reader& r, std::string name, const toml::node& n) {
    auto text = r.string(n, name);
    conda::VirtualPackage v;
    v.name = std::move(name);
    auto eq = text.find('=');
    v.version = text.substr(0, eq);
    if (eq != std::string::npos) v.build = text.substr(eq + 1);
    if (v.version.empty() || v.build.empty())
        r.fail(n.source(), "virtual package " + v.name + " must be \"version\" or \"version=build\", not \"" + text + "\"");
    return v;
}

LockedCondaStep read_step(const Reader& r, const toml::table& t, std::size_t index) {
    const std::string where = "[[conda]] #" + std::to_string(index);
    r.check_keys(t, where,
                 {"step", "prefix", "subdir", "channel_priority", "channels", "specs", "inputs", "virtual_packages",
                  "package"});
    LockedCondaStep s;
    const auto& step_node = r.need(t, "step", where);
    s.step = r.number(step_node, "step");
    if (s.step == 0) r.fail(step_node.source(), "\"step\" must be 1 or more");
    s.prefix = r.string(t, "prefix", where);
    s.subdir = r.string(t, "subdir", where);
    s.channel_priority = r.string(t, "channel_priority", where);
    s.channels = r.strings(t, "channels", true, where);
    s.specs = r.strings(t, "specs", true, where);
    s.inputs = r.string(t, "inputs", where);
    if (const auto* v = t.get("virtual_packages")) {
        for (auto&& [k, value] : r.table(*v, "virtual_packages"))
            s.virtual_packages.push_back(parse_virtual_package(r, std::string(k.str()), value));
    }
    std::sort(s.virtual_packages.begin(), s.virtual_packages.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    if (const auto* p = t.get("package")) {
        const auto* packages = p->as_array();
        if (packages == nullptr) r.fail(p->source(), "\"package\" must be an array of tables ([[conda.package]])");
        std::size_t i = 0;
        for (const auto& item : *packages) {
            ++i;
            s.packages.push_back(read_package(r, r.table(item, "[[conda.package]]"),
                                              where + " [[conda.package]] #" + std::to_string(i)));
        }
    }
    std::sort(s.packages.begin(), s.packages.end(), record_less);
    return s;
}
}  // namespace

const LockedCondaStep* LockFile::find(std::size_t step) const {
    for (const auto& s : conda)
        if (s.step == step) return &s;
    return nullptr;
}

std::filesystem::path lock_path_for(const std::filesystem::path& recipe_file) {
    auto lock = recipe_file;
    lock.replace_extension(".lock");
    return lock;
}

std::string conda_inputs_hash(const std::vector<std::string>& specs, const std::vector<std::string>& channel_urls,
                              std::string_view subdir, std::string_view channel_priority,
                              const std::vector<conda::VirtualPackage>& virtual_packages) {
    // One item per line with a field tag: no item can spill into the next one.
    std::string text = "ocibuild conda inputs 1\n";
    for (const auto& s : specs) text += "spec " + s + "\n";
    for (const auto& c : channel_urls) text += "channel " + c + "\n";
    text += "subdir " + std::string(subdir) + "\n";
    text += "channel_priority " + std::string(channel_priority) + "\n";
    auto sorted = virtual_packages;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    for (const auto& v : sorted) text += "virtual " + v.name + " " + v.version + " " + v.build + "\n";
    return std::string(core::Digest::of(text).hex());
}

std::string virtual_package_text(const conda::VirtualPackage& package) {
    return package.build == "0" ? package.version : package.version + "=" + package.build;
}

std::string serialize_lock(const LockFile& lock) {
    Writer w;
    w.out = "# ocibuild lock file: written by `ocibuild lock` and `ocibuild build`; do not edit by hand.\n";
    w.num("version", lock_format_version);
    if (lock.base) {
        w.out += "\n[base]\n";
        w.str("ref", lock.base->ref);
        w.str("platform", lock.base->platform);
        w.str_if("digest", lock.base->digest);
    }
    auto steps = lock.conda;
    std::sort(steps.begin(), steps.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
    for (auto& s : steps) {
        w.out += "\n[[conda]]\n";
        w.num("step", s.step);
        w.str("prefix", s.prefix);
        w.str("subdir", s.subdir);
        w.str("channel_priority", s.channel_priority);
        w.array("channels", s.channels);
        w.array("specs", s.specs);
        w.str("inputs", s.inputs);
        if (!s.virtual_packages.empty()) {
            w.out += "\n[conda.virtual_packages]\n";
            auto virtuals = s.virtual_packages;
            std::sort(virtuals.begin(), virtuals.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
            for (const auto& v : virtuals) w.str(v.name, virtual_package_text(v));
        }
        std::sort(s.packages.begin(), s.packages.end(), record_less);
        for (const auto& p : s.packages) write_package(w, p);
    }
    return w.out;
}

LockFile parse_lock(std::string_view text, const std::string& source) {
    Reader r(source);
    toml::table root;
    try {
        root = toml::parse(text, std::string_view(source));
    } catch (const toml::parse_error& e) {
        r.fail(e.source(), std::string(e.description()));
    }
    r.check_keys(root, "the lock file", {"version", "base", "conda"});
    const auto& version_node = r.need(root, "version", "the lock file");
    auto version = r.number(version_node, "version");
    if (version != lock_format_version)
        r.fail(version_node.source(), "lock file version " + std::to_string(version) + " is not supported (this ocibuild reads version " +
                                          std::to_string(lock_format_version) + ")");
    LockFile lock;
    if (const auto* b = root.get("base")) {
        const auto& t = r.table(*b, "[base]");
        r.check_keys(t, "[base]", {"ref", "platform", "digest"});
        LockedBase base;
        base.ref = r.string(t, "ref", "[base]");
        base.platform = r.string(t, "platform", "[base]");
        base.digest = r.optional_string(t, "digest");
        if (!base.digest.empty() && !core::Digest::parse(base.digest))
            r.fail(t.get("digest")->source(), "\"digest\" must be sha256:<64 hex digits>, not \"" + base.digest + "\"");
        lock.base = std::move(base);
    }
    if (const auto* c = root.get("conda")) {
        const auto* steps = c->as_array();
        if (steps == nullptr) r.fail(c->source(), "\"conda\" must be an array of tables ([[conda]])");
        std::set<std::size_t> seen;
        std::size_t i = 0;
        for (const auto& item : *steps) {
            ++i;
            auto step = read_step(r, r.table(item, "[[conda]]"), i);
            if (!seen.insert(step.step).second)
                r.fail(item.source(), "step " + std::to_string(step.step) + " is locked twice");
            lock.conda.push_back(std::move(step));
        }
    }
    std::sort(lock.conda.begin(), lock.conda.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
    return lock;
}

std::optional<LockFile> read_lock(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::error_code ec;
        if (!std::filesystem::exists(path, ec)) return std::nullopt;
        throw Error(ErrorCategory::unavailable, "cannot read " + path.string());
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_lock(text.str(), path.string());
}

void write_lock(const std::filesystem::path& path, const LockFile& lock) {
    core::write_file_atomic(path, serialize_lock(lock));
}

std::string explicit_spec(std::string_view subdir, const std::vector<conda::PackageRecord>& records) {
    std::string out = "# This file may be used to create an environment using:\n"
                      "# $ conda create --name <env> --file <this file>\n"
                      "# platform: " + std::string(subdir) + "\n@EXPLICIT\n";
    for (const auto& r : records) {
        out += r.url;
        if (!r.sha256.empty()) out += "#sha256:" + r.sha256;
        else if (!r.md5.empty()) out += "#" + r.md5;
        out += '\n';
    }
    return out;
}

}  // namespace ocibuild::build
