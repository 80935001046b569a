// repodata.json → a compact, interned RepoData (simdjson on-demand; conda/rattler record rules).
//
// Memory shape: conda-forge's linux-64 is ~480k records in ~300 MB of JSON. Names, versions,
// depends/constrains strings, licenses and subdirs repeat a lot, so they are interned in one pool
// with 32-bit ids; builds and non-standard file names go to an arena; digests are raw bytes; file
// names equal to "name-version-build.conda|.tar.bz2" (nearly all) are not stored at all.
#include "ocibuild/conda/repodata.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ocibuild/core/error.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::conda {
namespace {

namespace od = simdjson::ondemand;

/// Interned strings with 32-bit ids; id 0 is "". Open addressing, linear probing, 32-bit hashes
/// kept in the slots so probes rarely touch the characters.
class StringPool {
public:
    StringPool() : spans_{{0, 0}}, slots_(1024) {}

    std::uint32_t intern(std::string_view s) {
        if (s.empty()) return 0;
        const std::uint32_t h = hash(s);
        std::size_t mask = slots_.size() - 1;
        for (std::size_t i = h & mask;; i = (i + 1) & mask) {
            Slot& slot = slots_[i];
            if (slot.id == 0) {
                if ((spans_.size() + 1) * 2 > slots_.size()) {
                    grow();
                    return intern_new(s, h);
                }
                slot = {static_cast<std::uint32_t>(spans_.size()), h};
                append(s);
                return slot.id;
            }
            if (slot.hash == h && get(slot.id) == s) return slot.id;
        }
    }

    /// intern(), first checking the id this field got last time: files list records sorted by
    /// file name, so neighbours share names, versions, licenses and subdirs.
    std::uint32_t intern(std::string_view s, std::uint32_t& last) {
        if (get(last) == s) return last;
        return last = intern(s);
    }

    [[nodiscard]] std::optional<std::uint32_t> find(std::string_view s) const {
        if (s.empty()) return 0;
        const std::uint32_t h = hash(s);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = h & mask;; i = (i + 1) & mask) {
            const Slot& slot = slots_[i];
            if (slot.id == 0) return std::nullopt;
            if (slot.hash == h && get(slot.id) == s) return slot.id;
        }
    }

    [[nodiscard]] std::string_view get(std::uint32_t id) const {
        const Span& sp = spans_[id];
        return {chars_.data() + sp.offset, sp.size};
    }

    void shrink() {
        chars_.shrink_to_fit();
        spans_.shrink_to_fit();
    }

private:
    struct Span {
        std::uint32_t offset;
        std::uint32_t size;
    };
    struct Slot {
        std::uint32_t id = 0;
        std::uint32_t hash = 0;
    };

    static std::uint32_t hash(std::string_view s) {
        return static_cast<std::uint32_t>(std::hash<std::string_view>{}(s));
    }

    void append(std::string_view s) {
        if (chars_.size() + s.size() > UINT32_MAX)
            throw core::Error(core::ErrorCategory::unsupported, "repodata string pool over 4 GiB");
        spans_.push_back({static_cast<std::uint32_t>(chars_.size()), static_cast<std::uint32_t>(s.size())});
        chars_.append(s);
    }

    std::uint32_t intern_new(std::string_view s, std::uint32_t h) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = h & mask;
        while (slots_[i].id != 0) i = (i + 1) & mask;
        slots_[i] = {static_cast<std::uint32_t>(spans_.size()), h};
        append(s);
        return slots_[i].id;
    }

    void grow() {
        std::vector<Slot> bigger(slots_.size() * 2);
        const std::size_t mask = bigger.size() - 1;
        for (const Slot& slot : slots_) {
            if (slot.id == 0) continue;
            std::size_t i = slot.hash & mask;
            while (bigger[i].id != 0) i = (i + 1) & mask;
            bigger[i] = slot;
        }
        slots_ = std::move(bigger);
    }

    std::string chars_;
    std::vector<Span> spans_;
    std::vector<Slot> slots_;
};

enum class FnKind : std::uint8_t { conda, tar_bz2, stored };

struct Record {
    std::uint32_t name = 0, version = 0, subdir = 0, noarch = 0, license = 0, license_family = 0;
    std::uint32_t site_packages = 0;
    std::uint32_t build_offset = 0, fn_offset = 0;   // into the arena
    std::uint32_t lists = 0;                         // into Impl::lists: depends, constrains, features
    std::uint16_t build_size = 0, fn_size = 0;
    std::uint16_t n_depends = 0, n_constrains = 0;
    std::uint8_t n_features = 0;
    FnKind fn_kind = FnKind::stored;
    bool has_md5 = false, has_sha256 = false;
    std::uint64_t build_number = 0, size = 0, timestamp = 0;
    std::array<std::uint8_t, 16> md5{};
    std::array<std::uint8_t, 32> sha256{};
};

constexpr std::string_view kConda = ".conda";
constexpr std::string_view kTarBz2 = ".tar.bz2";

std::string to_hex(const std::uint8_t* data, std::size_t n) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(n * 2, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = kDigits[data[i] >> 4];
        out[2 * i + 1] = kDigits[data[i] & 15];
    }
    return out;
}

constexpr std::array<std::int8_t, 256> kHexValue = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::int8_t>(i);
    for (int i = 0; i < 6; ++i) t['a' + i] = t['A' + i] = static_cast<std::int8_t>(10 + i);
    return t;
}();

int hex_value(char c) { return kHexValue[static_cast<unsigned char>(c)]; }

template <std::size_t N>
bool from_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
    if (text.size() != 2 * N) return false;
    for (std::size_t i = 0; i < N; ++i) {
        const int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return true;
}

/// RepoData's storage (RepoData::Impl is this; the parser below fills it).
struct Tables {
    std::string subdir;
    std::string channel_url;
    std::string base_url;  // ends with '/'
    StringPool pool;
    std::string arena;  // builds and unusual file names
    std::vector<Record> records;
    std::vector<std::uint32_t> lists;  // pool ids
    std::vector<std::uint32_t> by_name;  // record indices grouped by name, file order within a name
    std::unordered_map<std::uint32_t, std::pair<std::uint32_t, std::uint32_t>> name_ranges;  // id → (begin, n)

    [[nodiscard]] std::string_view build(const Record& r) const { return {arena.data() + r.build_offset, r.build_size}; }
    [[nodiscard]] std::string fn(const Record& r) const {
        if (r.fn_kind == FnKind::stored) return std::string(arena.data() + r.fn_offset, r.fn_size);
        std::string out;
        out.append(pool.get(r.name)).append("-").append(pool.get(r.version)).append("-").append(build(r));
        out.append(r.fn_kind == FnKind::conda ? kConda : kTarBz2);
        return out;
    }
    [[nodiscard]] std::vector<std::string_view> strings(std::uint32_t begin, std::size_t n) const {
        std::vector<std::string_view> out;
        out.reserve(n);
        for (std::size_t k = 0; k < n; ++k) out.push_back(pool.get(lists[begin + k]));
        return out;
    }
};

enum class Field : std::uint8_t {
    unknown, name, version, build, build_number, depends, constrains, track_features, subdir, noarch,
    license, license_family, md5, sha256, size, timestamp, record_version, python_site_packages_path,
};

/// `raw` points just past a key's opening quote (simdjson keeps at least the closing quote and
/// padding after it). Keys with escapes never match, as in simdjson's own find_field.
template <std::size_t N>
bool key_is(const char* raw, const char (&literal)[N]) {
    return std::memcmp(raw, literal, N - 1) == 0 && raw[N - 1] == '"';
}

Field record_field(const char* k) {
    switch (k[0]) {
        case 'b':
            if (key_is(k, "build")) return Field::build;
            if (key_is(k, "build_number")) return Field::build_number;
            break;
        case 'c':
            if (key_is(k, "constrains")) return Field::constrains;
            break;
        case 'd':
            if (key_is(k, "depends")) return Field::depends;
            break;
        case 'l':
            if (key_is(k, "license")) return Field::license;
            if (key_is(k, "license_family")) return Field::license_family;
            break;
        case 'm':
            if (key_is(k, "md5")) return Field::md5;
            break;
        case 'n':
            if (key_is(k, "name")) return Field::name;
            if (key_is(k, "noarch")) return Field::noarch;
            break;
        case 'p':
            if (key_is(k, "python_site_packages_path")) return Field::python_site_packages_path;
            break;
        case 'r':
            if (key_is(k, "record_version")) return Field::record_version;
            break;
        case 's':
            if (key_is(k, "sha256")) return Field::sha256;
            if (key_is(k, "size")) return Field::size;
            if (key_is(k, "subdir")) return Field::subdir;
            break;
        case 't':
            if (key_is(k, "timestamp")) return Field::timestamp;
            if (key_is(k, "track_features")) return Field::track_features;
            break;
        case 'v':
            if (key_is(k, "version")) return Field::version;
            break;
        default:
            break;
    }
    return Field::unknown;
}

constexpr std::array<std::string_view, 18> kFieldNames = {
    "", "name", "version", "build", "build_number", "depends", "constrains", "track_features", "subdir", "noarch",
    "license", "license_family", "md5", "sha256", "size", "timestamp", "record_version", "python_site_packages_path",
};

/// Where the parser is, for error messages.
struct Where {
    std::string_view section;  // "packages", "packages.conda", "info", "removed"
    std::string_view fn;
    std::string_view field;
};

struct FieldError {
    const char* at;  // position in the text, or nullptr for "where simdjson stopped"
    std::string what;
};

class Parser {
public:
    Parser(Tables& out, std::string_view text, od::document& doc)
        : out_(out), end_(text.data() + text.size()), doc_(doc) {}

    void run() {
        od::object top = doc_.get_object().value();
        for (auto field : top) {
            const std::string_view key = field.unescaped_key().value();
            where_ = {key, {}, {}};
            od::value value = field.value().value();
            if (key == "packages") {
                parse_packages(value, FnKind::tar_bz2);
            } else if (key == "packages.conda") {
                parse_packages(value, FnKind::conda);
            } else if (key == "info") {
                parse_info(value);
            } else if (key == "removed") {
                for (auto item : value.get_array().value()) removed_.insert(item.get_string().value());
            } else if (key == "repodata_version") {
                (void)value.get_uint64().value();
            }
        }
        where_ = {};
        finish();
    }

    [[nodiscard]] std::string describe() const {
        std::string out;
        if (!where_.section.empty()) out.append(where_.section);
        if (!where_.fn.empty()) out.append(" \"").append(where_.fn).append("\"");
        if (!where_.field.empty()) out.append(out.empty() ? "" : " ").append("field \"").append(where_.field).append("\"");
        return out;
    }

private:
    void parse_info(od::value value) {
        for (auto field : value.get_object().value()) {
            const std::string_view key = field.unescaped_key().value();
            where_.field = key;
            od::value v = field.value().value();
            if (key == "subdir") {
                info_subdir_ = std::string(optional_string(v));
            } else if (key == "base_url") {
                base_url_ = std::string(optional_string(v));
            } else if (key == "repodata_version") {
                (void)v.get_uint64().value();
            }
        }
        where_.field = {};
    }

    void parse_packages(od::value value, FnKind kind) {
        for (auto field : value.get_object().value()) {
            // The key as it stands in the text when it has no escapes (as text() below).
            const char* raw = field.key().value().raw();
            const auto* quote = static_cast<const char*>(std::memchr(raw, '"', static_cast<std::size_t>(end_ - raw)));
            std::string_view fn(raw, quote == nullptr ? 0 : static_cast<std::size_t>(quote - raw));
            if (quote == nullptr || fn.find('\\') != std::string_view::npos) fn = field.unescaped_key().value();
            where_.fn = fn;
            parse_record(field.value().value(), fn, kind);
            where_.fn = {};
            where_.field = {};
        }
    }

    // A string value. Nearly all repodata strings lack escapes: those are viewed in place in
    // the text (valid until parse() returns), sparing simdjson's copy into its string buffer.
    static bool try_text(od::value& v, std::string_view& out) {
        const std::string_view token = v.raw_json_token();  // "…" and any whitespace after it
        if (token.empty() || token.front() != '"') return false;
        const std::string_view body = token.substr(1, token.rfind('"') - 1);
        if (body.find('\\') != std::string_view::npos) {
            out = v.get_string().value();
        } else {
            (void)v.get_raw_json_string().value();  // consume it
            out = body;
        }
        return true;
    }

    static std::string_view text(od::value& v) {
        std::string_view s;
        if (!try_text(v, s)) throw simdjson::simdjson_error(simdjson::INCORRECT_TYPE);
        return s;
    }

    static std::string_view optional_string(od::value& v) {
        std::string_view s;
        if (try_text(v, s)) return s;
        if (v.is_null()) return {};
        throw simdjson::simdjson_error(simdjson::INCORRECT_TYPE);
    }

    std::uint64_t optional_uint(od::value& v) {
        std::uint64_t n = 0;
        const auto err = v.get_uint64().get(n);
        if (!err) return n;
        if (err == simdjson::INCORRECT_TYPE && v.is_null()) return 0;
        throw simdjson::simdjson_error(err);
    }

    // depends/constrains/track_features: a list of strings (null = empty); track_features may
    // also be one string of names separated by spaces or commas.
    std::size_t string_list(od::value& v, bool split_string) {
        const std::size_t before = out_.lists.size();
        if (split_string) {
            std::string_view s;
            if (try_text(v, s)) {
                std::size_t i = 0;
                while (i < s.size()) {
                    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
                    std::size_t j = i;
                    while (j < s.size() && s[j] != ' ' && s[j] != ',') ++j;
                    if (j > i) out_.lists.push_back(out_.pool.intern(s.substr(i, j - i)));
                    i = j;
                }
                return out_.lists.size() - before;
            }
        }
        if (v.is_null()) return 0;
        for (auto item : v.get_array().value()) {
            od::value element = item.value();
            out_.lists.push_back(out_.pool.intern(text(element)));
        }
        return out_.lists.size() - before;
    }

    template <std::size_t N>
    bool digest(od::value& v, std::array<std::uint8_t, N>& bytes) {
        const char* at = v.current_location().value();
        const std::string_view s = optional_string(v);
        if (s.empty()) return false;
        if (!from_hex(s, bytes))
            throw FieldError{at, "expected " + std::to_string(2 * N) + " hex digits, got \"" + std::string(s) + "\""};
        return true;
    }

    std::uint32_t to_arena(std::string_view s) {
        if (s.size() > UINT16_MAX) throw FieldError{nullptr, "longer than 65535 bytes"};
        if (out_.arena.size() + s.size() > UINT32_MAX)
            throw core::Error(core::ErrorCategory::unsupported, "repodata arena over 4 GiB");
        const auto offset = static_cast<std::uint32_t>(out_.arena.size());
        out_.arena.append(s);
        return offset;
    }

    static std::uint16_t count16(std::size_t n) {
        if (n > UINT16_MAX) throw FieldError{nullptr, "more than 65535 entries"};
        return static_cast<std::uint16_t>(n);
    }

    void parse_record(od::value value, std::string_view fn, FnKind kind) {
        const char* record_at = value.current_location().value();
        Record r;
        r.fn_kind = kind;
        // The three lists must be adjacent in out_.lists; gather constrains and features apart
        // when they come before depends (key order is free in JSON).
        r.lists = static_cast<std::uint32_t>(out_.lists.size());
        std::vector<std::uint32_t>& lists = out_.lists;
        std::size_t depends_at = SIZE_MAX, constrains_at = SIZE_MAX, features_at = SIZE_MAX;
        std::size_t n_depends = 0, n_constrains = 0, n_features = 0;
        std::string_view build;
        bool has_name = false, has_version = false, has_build = false;
        std::uint64_t record_version = 1;
        for (auto field : value.get_object().value()) {
            const Field key = record_field(field.key().value().raw());
            if (key == Field::unknown) continue;
            where_.field = kFieldNames[static_cast<std::size_t>(key)];
            od::value v = field.value().value();
            switch (key) {
                case Field::depends:
                    depends_at = lists.size();
                    n_depends = string_list(v, false);
                    break;
                case Field::name:
                    r.name = out_.pool.intern(text(v), last_.name);
                    has_name = true;
                    break;
                case Field::version:
                    r.version = out_.pool.intern(text(v), last_.version);
                    has_version = true;
                    break;
                case Field::build:
                    build = text(v);
                    has_build = true;
                    break;
                case Field::build_number: r.build_number = optional_uint(v); break;
                case Field::md5: r.has_md5 = digest(v, r.md5); break;
                case Field::sha256: r.has_sha256 = digest(v, r.sha256); break;
                case Field::size: r.size = optional_uint(v); break;
                case Field::subdir: r.subdir = out_.pool.intern(optional_string(v), last_.subdir); break;
                case Field::timestamp: r.timestamp = timestamp_ms(v); break;
                case Field::license: r.license = out_.pool.intern(optional_string(v), last_.license); break;
                case Field::license_family: r.license_family = out_.pool.intern(optional_string(v), last_.license_family); break;
                case Field::constrains:
                    constrains_at = lists.size();
                    n_constrains = string_list(v, false);
                    break;
                case Field::noarch: r.noarch = noarch(v); break;
                case Field::track_features:
                    features_at = lists.size();
                    n_features = string_list(v, true);
                    break;
                case Field::record_version: record_version = optional_uint(v); break;
                case Field::python_site_packages_path: r.site_packages = out_.pool.intern(optional_string(v)); break;
                case Field::unknown: break;
            }
        }
        where_.field = {};
        if (!has_name || !has_version || !has_build) {
            throw FieldError{record_at, std::string("missing \"") + (!has_name ? "name" : !has_version ? "version" : "build") + "\""};
        }
        if (record_version > 1) {  // a format this reader does not know (conda skips these too)
            lists.resize(r.lists);
            return;
        }
        r.n_depends = count16(n_depends);
        r.n_constrains = count16(n_constrains);
        if (n_features > UINT8_MAX) throw FieldError{record_at, "more than 255 track_features"};
        r.n_features = static_cast<std::uint8_t>(n_features);
        // Real files list depends before constrains before track_features, which is the order
        // the record's slice of `lists` needs; rebuild the slice when a file says otherwise.
        const std::size_t base = r.lists;
        const bool in_order = (n_depends == 0 || depends_at == base) &&
                              (n_constrains == 0 || constrains_at == base + n_depends) &&
                              (n_features == 0 || features_at == base + n_depends + n_constrains);
        if (!in_order) {
            std::vector<std::uint32_t> slice;
            auto take = [&](std::size_t at, std::size_t n) {
                const auto from = lists.begin() + static_cast<std::ptrdiff_t>(at == SIZE_MAX ? base : at);
                slice.insert(slice.end(), from, from + static_cast<std::ptrdiff_t>(n));
            };
            take(depends_at, n_depends);
            take(constrains_at, n_constrains);
            take(features_at, n_features);
            lists.resize(base);
            lists.insert(lists.end(), slice.begin(), slice.end());
        }
        r.build_offset = to_arena(build);
        r.build_size = static_cast<std::uint16_t>(build.size());
        const std::string_view ext = kind == FnKind::conda ? kConda : kTarBz2;
        const std::string_view name = out_.pool.get(r.name), version = out_.pool.get(r.version);
        const bool derived = fn.size() == name.size() + version.size() + build.size() + 2 + ext.size() &&
                             fn.starts_with(name) && fn[name.size()] == '-' &&
                             fn.substr(name.size() + 1, version.size()) == version &&
                             fn[name.size() + 1 + version.size()] == '-' &&
                             fn.substr(name.size() + version.size() + 2, build.size()) == build && fn.ends_with(ext);
        if (!derived) {
            r.fn_kind = FnKind::stored;
            r.fn_offset = to_arena(fn);
            r.fn_size = static_cast<std::uint16_t>(fn.size());
        }
        out_.records.push_back(r);
        fns_.push_back(fn);
        from_conda_.push_back(kind == FnKind::conda);
        if (kind == FnKind::conda) {
            const std::string_view stem = fn.substr(0, fn.size() - std::min(fn.size(), kConda.size()));
            conda_stems_.push_back({std::hash<std::string_view>{}(stem), stem});
        }
    }

    std::uint64_t timestamp_ms(od::value& v) {
        std::uint64_t n = 0;
        auto err = v.get_uint64().get(n);
        if (err == simdjson::INCORRECT_TYPE || err == simdjson::NUMBER_OUT_OF_RANGE) {
            double d = 0;
            if (!v.get_double().get(d)) {
                n = d > 0 ? static_cast<std::uint64_t>(d) : 0;
                err = simdjson::SUCCESS;
            } else if (v.is_null()) {
                return 0;
            }
        }
        if (err) throw simdjson::simdjson_error(err);
        // Old records carry seconds; conda and rattler read anything before year 9999 in seconds.
        return n > 253402300799ULL ? n : n * 1000;
    }

    std::uint32_t noarch(od::value& v) {
        bool flag = false;
        if (!v.get_bool().get(flag)) return flag ? out_.pool.intern("generic") : 0;
        return out_.pool.intern(optional_string(v));
    }

    void finish() {
        // A .conda record replaces the .tar.bz2 of the same stem; `removed` files are dropped.
        auto& records = out_.records;
        if (!removed_.empty()) {  // a removed .conda replaces nothing
            std::erase_if(conda_stems_, [&](const auto& entry) {
                return removed_.contains(std::string(entry.second).append(kConda));
            });
        }
        std::sort(conda_stems_.begin(), conda_stems_.end());
        auto has_conda = [&](std::string_view stem) {
            const std::pair<std::size_t, std::string_view> key{std::hash<std::string_view>{}(stem), stem};
            return std::binary_search(conda_stems_.begin(), conda_stems_.end(), key);
        };
        std::size_t kept = 0;
        for (std::size_t i = 0; i < records.size(); ++i) {
            const std::string_view fn = fns_[i];
            if (!removed_.empty() && removed_.contains(fn)) continue;
            if (!from_conda_[i] && fn.ends_with(kTarBz2) &&
                has_conda(fn.substr(0, fn.size() - kTarBz2.size())))
                continue;
            records[kept++] = records[i];
        }
        // No shrink_to_fit: the reserved tail was never touched, so it takes no memory.
        records.resize(kept);
        out_.arena.shrink_to_fit();
        out_.pool.shrink();
    }

public:
    Tables& out_;
    const char* end_;
    od::document& doc_;
    Where where_;
    std::string info_subdir_, base_url_;
    std::vector<std::string_view> fns_;  // per parsed record; views into the text or simdjson's buffer
    std::vector<std::pair<std::size_t, std::string_view>> conda_stems_;  // (hash, stem), sorted in finish()
    std::unordered_set<std::string_view> removed_;
    struct {
        std::uint32_t name = 0, version = 0, subdir = 0, license = 0, license_family = 0;
    } last_;                              // StringPool::intern's one-entry caches
    std::vector<bool> from_conda_;       // per parsed record: listed under packages.conda
};

std::string subdir_from_url(std::string_view url) {
    while (url.ends_with('/')) url.remove_suffix(1);
    const auto slash = url.rfind('/');
    return std::string(slash == std::string_view::npos ? url : url.substr(slash + 1));
}

}  // namespace

struct RepoData::Impl : Tables {};

RepoData::RepoData() : impl_(std::make_shared<Impl>()) {}

RepoData RepoData::parse(std::string json, std::string subdir_url, std::string channel_url, std::string_view source) {
    auto impl = std::make_shared<Impl>();
    impl->channel_url = std::move(channel_url);
    const std::size_t text_size = json.size();
    if (json.capacity() < text_size + simdjson::SIMDJSON_PADDING) json.reserve(text_size + simdjson::SIMDJSON_PADDING);
    // Real repodata runs ~600 bytes per record and ~60 bytes per list entry; reserve more than
    // that: pages of the reserved tail that are never written take no memory.
    impl->records.reserve(text_size / 256 + 16);
    impl->lists.reserve(text_size / 32 + 16);

    od::parser parser;
    simdjson::padded_string_view view(json.data(), text_size, json.capacity());
    od::document doc;
    std::optional<Parser> p;
    bool started = false;  // stage 1 (the whole-text scan) passed; positions are known from here on
    auto fail = [&](const char* at, std::string_view what) -> core::Error {
        std::string message(source);
        if (started) {
            const char* here = nullptr;
            if (at == nullptr && !doc.current_location().get(here)) at = here;
            const bool inside = at != nullptr && at >= json.data() && at <= json.data() + text_size;
            message += ": byte " + std::to_string(inside ? static_cast<std::size_t>(at - json.data()) : text_size);
        }
        const std::string context = p ? p->describe() : std::string();
        if (!context.empty()) message += ": " + context;
        return core::Error(core::ErrorCategory::invalid_input, message + ": " + std::string(what));
    };
    try {
        if (auto err = parser.iterate(view).get(doc)) throw simdjson::simdjson_error(err);
        started = true;
        p.emplace(*impl, std::string_view(json.data(), text_size), doc);
        p->run();
    } catch (const simdjson::simdjson_error& e) {
        // An unbalanced document is caught where it starts; the fault is where it stops.
        const char* at = e.error() == simdjson::INCOMPLETE_ARRAY_OR_OBJECT ? json.data() + text_size : nullptr;
        throw fail(at, simdjson::error_message(e.error()));
    } catch (const FieldError& e) {
        throw fail(e.at, e.what);
    }

    impl->subdir = p->info_subdir_.empty() ? subdir_from_url(subdir_url) : p->info_subdir_;
    std::string base = subdir_url;
    if (!base.empty() && !base.ends_with('/')) base += '/';
    if (!p->base_url_.empty()) {
        base = base.empty() ? p->base_url_ : registry::resolve_url(base, p->base_url_);
        if (!base.ends_with('/')) base += '/';
    }
    impl->base_url = std::move(base);
    p.reset();

    // Records without a subdir belong to the file's; then the name index.
    const std::uint32_t subdir_id = impl->pool.intern(impl->subdir);
    std::vector<std::uint32_t> counts_by_name;
    std::unordered_map<std::uint32_t, std::uint32_t> slot_of_name;
    for (auto& r : impl->records) {
        if (r.subdir == 0) r.subdir = subdir_id;
        auto [it, fresh] = slot_of_name.try_emplace(r.name, static_cast<std::uint32_t>(counts_by_name.size()));
        if (fresh) counts_by_name.push_back(0);
        ++counts_by_name[it->second];
    }
    std::vector<std::uint32_t> next(counts_by_name.size());
    std::uint32_t offset = 0;
    for (std::size_t k = 0; k < counts_by_name.size(); ++k) {
        next[k] = offset;
        offset += counts_by_name[k];
    }
    impl->by_name.resize(impl->records.size());
    impl->name_ranges.reserve(slot_of_name.size());
    for (const auto& [name, slot] : slot_of_name) impl->name_ranges.emplace(name, std::pair{next[slot], counts_by_name[slot]});
    for (std::uint32_t i = 0; i < impl->records.size(); ++i) impl->by_name[next[slot_of_name[impl->records[i].name]]++] = i;

    RepoData out;
    out.impl_ = std::move(impl);
    return out;
}

std::size_t RepoData::size() const noexcept { return impl_->records.size(); }
const std::string& RepoData::subdir() const noexcept { return impl_->subdir; }
const std::string& RepoData::channel_url() const noexcept { return impl_->channel_url; }

std::string_view RepoData::name(std::size_t i) const { return impl_->pool.get(impl_->records.at(i).name); }
std::string_view RepoData::version(std::size_t i) const { return impl_->pool.get(impl_->records.at(i).version); }
std::string_view RepoData::build(std::size_t i) const { return impl_->build(impl_->records.at(i)); }
std::uint64_t RepoData::build_number(std::size_t i) const { return impl_->records.at(i).build_number; }
std::size_t RepoData::track_feature_count(std::size_t i) const { return impl_->records.at(i).n_features; }
std::uint64_t RepoData::timestamp(std::size_t i) const { return impl_->records.at(i).timestamp; }

std::vector<std::string_view> RepoData::depends(std::size_t i) const {
    const Record& r = impl_->records.at(i);
    return impl_->strings(r.lists, r.n_depends);
}

std::vector<std::string_view> RepoData::constrains(std::size_t i) const {
    const Record& r = impl_->records.at(i);
    return impl_->strings(r.lists + r.n_depends, r.n_constrains);
}

PackageRecord RepoData::record(std::size_t i) const {
    const Impl& d = *impl_;
    const Record& r = d.records.at(i);
    auto str = [&](std::uint32_t id) { return std::string(d.pool.get(id)); };
    auto strs = [&](std::uint32_t begin, std::size_t n) {
        std::vector<std::string> out;
        for (auto s : d.strings(begin, n)) out.emplace_back(s);
        return out;
    };
    PackageRecord p;
    p.name = str(r.name);
    p.version = str(r.version);
    p.build = std::string(d.build(r));
    p.build_number = r.build_number;
    p.depends = strs(r.lists, r.n_depends);
    p.constrains = strs(r.lists + r.n_depends, r.n_constrains);
    p.track_features = strs(r.lists + r.n_depends + r.n_constrains, r.n_features);
    p.subdir = str(r.subdir);
    p.noarch = str(r.noarch);
    p.license = str(r.license);
    p.license_family = str(r.license_family);
    if (r.has_md5) p.md5 = to_hex(r.md5.data(), r.md5.size());
    if (r.has_sha256) p.sha256 = to_hex(r.sha256.data(), r.sha256.size());
    p.size = r.size;
    p.timestamp = r.timestamp;
    p.python_site_packages_path = str(r.site_packages);
    p.fn = d.fn(r);
    p.url = d.base_url + p.fn;
    p.channel = d.channel_url;
    return p;
}

std::span<const std::uint32_t> RepoData::by_name(std::string_view name) const {
    const auto id = impl_->pool.find(name);
    if (!id) return {};
    const auto it = impl_->name_ranges.find(*id);
    if (it == impl_->name_ranges.end()) return {};
    return std::span<const std::uint32_t>(impl_->by_name).subspan(it->second.first, it->second.second);
}

std::vector<std::string_view> RepoData::names() const {
    std::vector<std::string_view> out;
    out.reserve(impl_->name_ranges.size());
    for (const auto& [id, range] : impl_->name_ranges) out.push_back(impl_->pool.get(id));
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace ocibuild::conda
