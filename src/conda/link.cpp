#include "link.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "ocibuild/core/digest.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "package_cache.hpp"
#include "task_pool.hpp"
#include "tree_fd.hpp"

namespace ocibuild::conda::detail {
namespace {

using core::Error;
using core::ErrorCategory;
using Json = nlohmann::json;

constexpr std::size_t max_shebang_length = 127;  // Linux (mamba's MAX_SHEBANG_LENGTH, conda's)
constexpr std::string_view legacy_placeholder = "/opt/anaconda1anaconda2anaconda3";
constexpr std::int64_t entry_point_mtime = 315532800;  // 1980-01-01: fixed, builds are reproducible
constexpr std::size_t io_chunk = 1 << 20;

// ------------------------------------------------------------------------------------------------
// Prefix replacement

/// Finds one (long: placeholders are up to 255 bytes) needle in large haystacks; Horspool skips
/// most of a binary where string_view::find stops at every occurrence of the first byte.
class Finder {
public:
    explicit Finder(std::string_view needle) : needle_(needle), searcher_(needle.begin(), needle.end()) {}
    [[nodiscard]] std::size_t find(std::string_view data, std::size_t pos) const {
        if (pos > data.size()) return std::string_view::npos;
        const auto it = std::search(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end(), searcher_);
        return it == data.end() ? std::string_view::npos : static_cast<std::size_t>(it - data.begin());
    }
    [[nodiscard]] std::size_t size() const noexcept { return needle_.size(); }

private:
    std::string_view needle_;
    std::boyer_moore_horspool_searcher<std::string_view::const_iterator> searcher_;
};

/// Emits `data` with every occurrence of the needle replaced by `to`; returns how many.
std::size_t replace_all(std::string_view data, const Finder& from, std::string_view to, const Emit& emit) {
    std::size_t count = 0;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t hit = from.find(data, pos);
        if (hit == std::string_view::npos) break;
        emit(data.substr(pos, hit - pos));
        emit(to);
        ++count;
        pos = hit + from.size();
    }
    emit(data.substr(pos));
    return count;
}

/// conda's replace_long_shebang on one (already prefix-replaced) first line, without its '\n'.
std::optional<std::string> rewrite_shebang(std::string_view line, std::string_view prefix) {
    if (!line.starts_with("#!")) return std::nullopt;
    if (line.size() <= max_shebang_length && prefix.find(' ') == std::string_view::npos) return std::nullopt;
    std::size_t i = 2;
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size() || line[i] != '/') return std::nullopt;
    const std::size_t start = i;
    while (i < line.size()) {
        if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == ' ') {
            i += 2;
            continue;
        }
        const char c = line[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') break;
        ++i;
    }
    const std::string_view executable = line.substr(start, i - start);
    const std::string_view name = executable.substr(executable.rfind('/') + 1);
    if (name.empty()) return std::nullopt;
    return "#!/usr/bin/env " + std::string(name) + std::string(line.substr(i));
}

// ------------------------------------------------------------------------------------------------
// Files

/// A read-only view of a whole file.
class MappedFile {
public:
    MappedFile(int fd, std::size_t size, const std::string& what) : size_(size) {
        if (size_ == 0) return;
        addr_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr_ == MAP_FAILED) {
            addr_ = nullptr;
            core::throw_errno("cannot map " + what);
        }
    }
    ~MappedFile() {
        if (addr_ != nullptr) ::munmap(addr_, size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    [[nodiscard]] std::string_view view() const {
        return addr_ == nullptr ? std::string_view() : std::string_view(static_cast<const char*>(addr_), size_);
    }

private:
    void* addr_ = nullptr;
    std::size_t size_;
};

/// Buffered writes to a new file, hashed on the way.
class HashingWriter {
public:
    HashingWriter(int fd, std::string what) : fd_(fd), what_(std::move(what)) { buffer_.reserve(io_chunk); }
    void write(std::string_view data) {
        sha256_.update(data);
        if (buffer_.size() + data.size() > io_chunk) flush();
        if (data.size() >= io_chunk) {
            core::write_all(fd_, data.data(), data.size(), what_);
        } else {
            buffer_.append(data);
        }
    }
    /// Flushes; the sha256 hex of everything written.
    std::string finish() {
        flush();
        return std::string(sha256_.finish().hex());
    }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return sha256_.bytes(); }

private:
    void flush() {
        core::write_all(fd_, buffer_.data(), buffer_.size(), what_);
        buffer_.clear();
    }
    int fd_;
    std::string what_;
    std::string buffer_;
    core::Sha256 sha256_;
};

core::UniqueFd open_at(int dir_fd, const std::string& name, int flags, mode_t mode, const std::string& what) {
    int fd;
    do {
        fd = ::openat(dir_fd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) core::throw_errno("cannot open " + what);
    return core::UniqueFd(fd);
}

/// Copies `src` to `dst` (both at offset 0), in the kernel where it can.
void copy_contents(int src, int dst, const std::string& what) {
    for (;;) {
        const ssize_t n = ::copy_file_range(src, nullptr, dst, nullptr, io_chunk * 16, 0);
        if (n > 0) continue;
        if (n == 0) return;
        if (errno == EINTR) continue;
        if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP || errno == EPERM) break;
        core::throw_errno("cannot copy " + what);
    }
    // Fallback: plain reads and writes from wherever copy_file_range stopped.
    std::vector<char> buf(io_chunk);
    for (;;) {
        const std::size_t n = core::read_full(src, buf.data(), buf.size(), what);
        if (n == 0) return;
        core::write_all(dst, buf.data(), n, what);
    }
}

/// The text of a small file of the package, nullopt when it does not have it. Read without
/// following symlinks: the package decides nothing about what we read.
std::optional<std::string> read_package_file(int package_fd, std::string_view rel, const std::string& what) {
    const auto path = parse_rel_path(rel);
    core::UniqueFd parent;
    try {
        parent = open_parent(package_fd, *path, /*create=*/false, what);
    } catch (const Error& e) {
        if (e.category() == ErrorCategory::not_found) return std::nullopt;
        throw;
    }
    const int fd = ::openat(parent.get(), path->name().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        core::throw_errno(what + ": cannot open " + path->text);
    }
    const core::UniqueFd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) core::throw_errno(what + ": cannot stat " + path->text);
    if (st.st_size > (512ll << 20))
        throw Error(ErrorCategory::invalid_input, what + ": " + path->text + " is implausibly large");
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    text.resize(core::read_full(fd, text.data(), text.size(), what + ": " + path->text));
    return text;
}

// ------------------------------------------------------------------------------------------------
// The package's path list

struct PathEntry {
    RelPath path;
    std::string path_type = "hardlink";
    std::string file_mode;  // "text" | "binary", meaningful with a placeholder
    std::string placeholder;
    bool no_link = false;
    std::string sha256;
    std::optional<std::uint64_t> size;
};

RelPath checked_path(std::string_view text, std::string_view source, const std::string& what) {
    auto path = parse_rel_path(text);
    if (!path) {
        throw Error(ErrorCategory::invalid_input, what + ": " + std::string(source) + ": path \"" + std::string(text) +
                                                      "\" is absolute, empty or holds \"..\"");
    }
    return std::move(*path);
}

std::vector<PathEntry> parse_paths_json(const std::string& text, const std::string& what) {
    const std::string source = "info/paths.json";
    Json doc;
    try {
        doc = Json::parse(text);
    } catch (const Json::exception& e) {
        throw Error(ErrorCategory::invalid_input, what + ": " + source + ": " + e.what());
    }
    auto bad = [&](const std::string& why) {
        return Error(ErrorCategory::invalid_input, what + ": " + source + ": " + why);
    };
    if (!doc.is_object()) throw bad("not a JSON object");
    if (auto v = doc.find("paths_version"); v != doc.end() && (!v->is_number_integer() || *v != 1))
        throw bad("paths_version " + v->dump() + " is not supported (only 1)");
    const auto paths = doc.find("paths");
    if (paths == doc.end() || !paths->is_array()) throw bad("no \"paths\" list");
    std::vector<PathEntry> out;
    out.reserve(paths->size());
    for (const Json& item : *paths) {
        if (!item.is_object()) throw bad("an entry is not an object");
        auto str = [&](const char* key) -> std::string {
            const auto it = item.find(key);
            if (it == item.end() || it->is_null()) return {};
            if (!it->is_string()) throw bad(std::string("\"") + key + "\" is not a string in " + item.dump());
            return it->get<std::string>();
        };
        PathEntry e;
        const std::string path = str("_path");
        e.path = checked_path(path, source, what);
        if (std::string type = str("path_type"); !type.empty()) e.path_type = type;
        if (e.path_type != "hardlink" && e.path_type != "softlink" && e.path_type != "directory")
            throw bad("\"" + path + "\": unknown path_type \"" + e.path_type + "\"");
        e.placeholder = str("prefix_placeholder");
        e.file_mode = str("file_mode");
        if (e.file_mode.empty()) e.file_mode = "text";
        if (e.file_mode != "text" && e.file_mode != "binary")
            throw bad("\"" + path + "\": unknown file_mode \"" + e.file_mode + "\"");
        if (const auto nl = item.find("no_link"); nl != item.end() && nl->is_boolean()) e.no_link = nl->get<bool>();
        e.sha256 = str("sha256");
        if (const auto size = item.find("size_in_bytes"); size != item.end() && size->is_number_unsigned())
            e.size = size->get<std::uint64_t>();
        out.push_back(std::move(e));
    }
    return out;
}

std::vector<std::string> lines_of(std::string_view text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.empty()) out.emplace_back(line);
        pos = end + 1;
    }
    return out;
}

/// shlex.split for has_prefix lines: whitespace separates, quotes group.
std::vector<std::string> split_words(std::string_view line) {
    std::vector<std::string> out;
    std::string word;
    bool in_word = false;
    char quote = 0;
    for (const char c : line) {
        if (quote != 0) {
            if (c == quote) {
                quote = 0;
            } else {
                word += c;
            }
        } else if (c == '"' || c == '\'') {
            quote = c;
            in_word = true;
        } else if (c == ' ' || c == '\t') {
            if (in_word) out.push_back(std::move(word));
            word.clear();
            in_word = false;
        } else {
            word += c;
            in_word = true;
        }
    }
    if (in_word) out.push_back(std::move(word));
    return out;
}

/// Packages without paths.json: info/files, info/has_prefix, info/no_link.
std::vector<PathEntry> legacy_paths(int package_fd, const std::string& what) {
    const auto files = read_package_file(package_fd, "info/files", what);
    if (!files) {
        throw Error(ErrorCategory::invalid_input, what + ": the package has neither info/paths.json nor info/files");
    }
    std::map<std::string, std::pair<std::string, std::string>> prefixed;  // path → placeholder, mode
    if (const auto has_prefix = read_package_file(package_fd, "info/has_prefix", what)) {
        for (const std::string& line : lines_of(*has_prefix)) {
            const std::vector<std::string> words = split_words(line);
            if (words.size() == 1) {
                prefixed[checked_path(words[0], "info/has_prefix", what).text] = {std::string(legacy_placeholder),
                                                                                  "text"};
            } else if (words.size() == 3 && (words[1] == "text" || words[1] == "binary")) {
                prefixed[checked_path(words[2], "info/has_prefix", what).text] = {words[0], words[1]};
            } else {
                throw Error(ErrorCategory::invalid_input,
                            what + ": info/has_prefix: cannot read line \"" + line + "\"");
            }
        }
    }
    std::set<std::string> no_link;
    if (const auto text = read_package_file(package_fd, "info/no_link", what)) {
        for (const std::string& line : lines_of(*text)) no_link.insert(checked_path(line, "info/no_link", what).text);
    }
    std::vector<PathEntry> out;
    for (const std::string& line : lines_of(*files)) {
        PathEntry e;
        e.path = checked_path(line, "info/files", what);
        if (const auto it = prefixed.find(e.path.text); it != prefixed.end()) {
            e.placeholder = it->second.first;
            e.file_mode = it->second.second;
        }
        e.no_link = no_link.count(e.path.text) > 0;
        out.push_back(std::move(e));
    }
    return out;
}

// ------------------------------------------------------------------------------------------------
// noarch: python

RelPath target_path(const PathEntry& e, const std::optional<PythonInfo>& python, bool noarch_python,
                    const std::string& what) {
    if (!noarch_python) return e.path;
    const std::string& first = e.path.components.front();
    std::string mapped;
    if (first == "site-packages") {
        mapped = python->site_packages + e.path.text.substr(first.size());
    } else if (first == "python-scripts") {
        mapped = "bin" + e.path.text.substr(first.size());
    } else {
        return e.path;
    }
    return checked_path(mapped, "noarch: python mapping", what);
}

bool is_identifier_path(std::string_view dotted) {
    if (dotted.empty()) return false;
    bool start = true;
    for (const char c : dotted) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '.') {
            if (start) return false;
            start = true;
            continue;
        }
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || u >= 0x80;
        const bool digit = c >= '0' && c <= '9';
        if (!(alpha || (digit && !start))) return false;
        start = false;
    }
    return !start;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

struct EntryPoint {
    std::string command;
    std::string module;
    std::string function;
};

EntryPoint parse_entry_point(std::string_view text, const std::string& what) {
    auto bad = [&](std::string_view why) {
        return Error(ErrorCategory::invalid_input,
                     what + ": entry point \"" + std::string(text) + "\": " + std::string(why));
    };
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) throw bad("expected \"command = module:function\"");
    const std::string_view command = trim(text.substr(0, eq));
    const std::string_view target = trim(text.substr(eq + 1));
    const std::size_t colon = target.find(':');
    if (colon == std::string_view::npos) throw bad("expected \"command = module:function\"");
    EntryPoint ep{std::string(command), std::string(trim(target.substr(0, colon))),
                  std::string(trim(target.substr(colon + 1)))};
    if (ep.command.empty() || ep.command == "." || ep.command == ".." ||
        ep.command.find_first_of("/ \t\n\r") != std::string::npos || ep.command.find('\0') != std::string::npos)
        throw bad("the command is not a plain file name");
    if (!is_identifier_path(ep.module)) throw bad("the module is not a dotted Python name");
    if (!is_identifier_path(ep.function)) throw bad("the function is not a dotted Python name");
    return ep;
}

/// noarch.entry_points of info/link.json, or entry_points of the older info/noarch.json (as
/// conda reads them).
std::vector<EntryPoint> entry_points(int package_fd, const std::string& what) {
    std::string source = "info/link.json";
    auto text = read_package_file(package_fd, source, what);
    if (!text) {
        source = "info/noarch.json";
        text = read_package_file(package_fd, source, what);
    }
    if (!text) return {};
    Json doc;
    try {
        doc = Json::parse(*text);
    } catch (const Json::exception& e) {
        throw Error(ErrorCategory::invalid_input, what + ": " + source + ": " + e.what());
    }
    if (!doc.is_object()) return {};
    const Json* holder = &doc;
    if (source == "info/link.json") {
        const auto noarch = doc.find("noarch");
        if (noarch == doc.end() || !noarch->is_object()) return {};
        holder = &*noarch;
    }
    const auto list = holder->find("entry_points");
    if (list == holder->end() || !list->is_array()) return {};
    std::vector<EntryPoint> out;
    for (const Json& item : *list) {
        if (!item.is_string()) {
            throw Error(ErrorCategory::invalid_input,
                        what + ": " + source + ": entry point " + item.dump() + " is not a string");
        }
        out.push_back(parse_entry_point(item.get<std::string>(), what));
    }
    return out;
}

/// conda's python_entry_point_template after its shebang (the same in mamba and rattler).
std::string entry_point_script(const EntryPoint& ep, const std::string& python) {
    std::string shebang = "#!" + python + "\n";
    if (shebang.size() > max_shebang_length || python.find(' ') != std::string::npos) {
        shebang = "#!/bin/sh\n'''exec' \"" + python + "\" \"$0\" \"$@\" #'''\n";
    }
    const std::string import_name = ep.function.substr(0, ep.function.find('.'));
    std::string script = shebang;
    script += "# -*- coding: utf-8 -*-\n";
    script += "import re\n";
    script += "import sys\n";
    script += "\n";
    script += "from " + ep.module + " import " + import_name + "\n";
    script += "\n";
    script += "if __name__ == '__main__':\n";
    script += "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n";
    script += "    sys.exit(" + ep.function + "())\n";
    return script;
}

// ------------------------------------------------------------------------------------------------
// Linking

void set_mode_and_time(int fd, mode_t mode, std::int64_t mtime, const std::string& what) {
    if (::fchmod(fd, mode) != 0) core::throw_errno("cannot chmod " + what);
    const struct timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(mtime), 0}};
    if (::futimens(fd, times) != 0) core::throw_errno("cannot set the time of " + what);
}

class Linker {
public:
    Linker(const PackageRecord& record, const LinkContext& context, int package_fd)
        : record_(record),
          context_(context),
          package_fd_(package_fd),
          what_(describe_package(record)),
          source_dirs_(package_fd),
          target_dirs_(context.prefix_fd, context.prefix) {}

    std::vector<LinkedPath> run() {
        const bool noarch_python = record_.noarch == "python";
        if (noarch_python && !context_.python) {
            throw Error(ErrorCategory::invalid_input,
                        what_ + " is noarch: python, but no python package is among those installed");
        }
        std::vector<PathEntry> entries;
        if (const auto text = read_package_file(package_fd_, "info/paths.json", what_)) {
            entries = parse_paths_json(*text, what_);
        } else {
            entries = legacy_paths(package_fd_, what_);
        }
        // Slots filled in order; file contents may still be copied by the pool into their slot
        // until wait(), so the vector is never resized before that.
        std::vector<LinkedPath> out(entries.size());
        try {
            link_all(entries, noarch_python, out);
        } catch (...) {
            // Tasks in flight point into `entries` and `out`: let them finish before these go.
            if (context_.pool != nullptr) {
                try {
                    context_.pool->wait();
                } catch (...) {  // the first error is the one being reported
                }
            }
            throw;
        }
        if (context_.pool != nullptr) context_.pool->wait();
        if (noarch_python) {
            for (const EntryPoint& ep : entry_points(package_fd_, what_)) out.push_back(write_entry_point(ep));
        }
        return out;
    }

private:
    void link_all(const std::vector<PathEntry>& entries, bool noarch_python, std::vector<LinkedPath>& out) {
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const PathEntry& e = entries[i];
            const RelPath target = target_path(e, context_.python, noarch_python, what_);
            link_one(e, target, out[i]);
            // conda runs these (pre-link is deprecated); a later step may have to do what they do.
            const std::string script_prefix = "bin/." + record_.name + "-";
            if (context_.log &&
                (target.text == script_prefix + "post-link.sh" || target.text == script_prefix + "pre-link.sh")) {
                context_.log("warning: " + what_ + " has a " +
                             (target.text.ends_with("post-link.sh") ? "post-link" : "pre-link") + " script (" +
                             target.text + ") that is not run; the environment may lack what it would have done");
            }
        }
    }

    void link_one(const PathEntry& e, const RelPath& target, LinkedPath& out) {
        out.path = target.text;
        out.path_type = e.path_type;
        out.sha256 = e.sha256;
        out.size_in_bytes = e.size;
        out.no_link = e.no_link;
        if (!e.placeholder.empty()) {
            out.prefix_placeholder = e.placeholder;
            out.file_mode = e.file_mode;
        }
        const int src_parent = source_dirs_.parent(e.path, /*create=*/false, what_);
        const auto st = stat_at(src_parent, e.path.name());
        if (!st) {
            throw Error(ErrorCategory::invalid_input,
                        what_ + ": the package lists \"" + e.path.text + "\" but does not contain it");
        }
        if (S_ISDIR(st->st_mode)) {
            (void)target_dirs_.dir(target, /*create=*/true, what_);
            out.path_type = "directory";
            return;
        }
        const int dst_parent = target_dirs_.parent(target, /*create=*/true, what_);
        remove_at(dst_parent, target.name(), what_);  // a file of an earlier package: replaced
        if (S_ISLNK(st->st_mode)) {
            const std::string link = read_link_at(src_parent, e.path.name(), what_);
            if (::symlinkat(link.c_str(), dst_parent, target.name().c_str()) != 0)
                core::throw_errno(what_ + ": cannot create symlink " + target.text);
            out.path_type = "softlink";
            return;
        }
        if (!S_ISREG(st->st_mode)) {
            throw Error(ErrorCategory::invalid_input, what_ + ": \"" + e.path.text + "\" is not a regular file");
        }
        if (e.path_type == "softlink" || e.path_type == "directory") out.path_type = "hardlink";
        auto job = std::make_shared<CopyJob>();
        job->entry = &e;
        job->target = target.text;
        job->name = target.name();
        job->st = *st;
        job->out = &out;
        job->src = open_at(src_parent, e.path.name(), O_RDONLY, 0, what_ + ": " + e.path.text);
        job->dst = open_at(dst_parent, target.name(), O_WRONLY | O_CREAT | O_EXCL, 0600, what_ + ": " + target.text);
        job->parent = core::UniqueFd(::fcntl(dst_parent, F_DUPFD_CLOEXEC, 0));
        if (!job->parent) core::throw_errno("cannot duplicate a directory descriptor");
        auto task = [job, this] { copy_data(*job); };
        if (context_.pool != nullptr) {
            context_.pool->submit(std::move(task));
        } else {
            task();
        }
    }

    /// What the pool needs to fill one new file.
    struct CopyJob {
        const PathEntry* entry = nullptr;
        std::string target;  // path below the prefix
        std::string name;    // its last component, in `parent`
        struct stat st {};   // of the source
        LinkedPath* out = nullptr;
        core::UniqueFd src;
        core::UniqueFd dst;
        core::UniqueFd parent;
    };

    /// Contents, hashes, mode and time of one new file; on failure the file is removed (unless
    /// another entry of the package has taken its name meanwhile).
    void copy_data(const CopyJob& job) const {
        const PathEntry& e = *job.entry;
        LinkedPath& out = *job.out;
        try {
            std::int64_t mtime = job.st.st_mtim.tv_sec;
            if (!e.placeholder.empty()) {
                const MappedFile data(job.src.get(), static_cast<std::size_t>(job.st.st_size), e.path.text);
                HashingWriter writer(job.dst.get(), job.target);
                const Emit emit = [&](std::string_view piece) { writer.write(piece); };
                if (e.file_mode == "binary") {
                    if (!replace_binary(data.view(), e.placeholder, context_.prefix, emit)) {
                        throw Error(ErrorCategory::invalid_input,
                                    what_ + ": \"" + job.target + "\": the prefix \"" + context_.prefix + "\" (" +
                                        std::to_string(context_.prefix.size()) +
                                        " bytes) is longer than the binary placeholder it replaces (" +
                                        std::to_string(e.placeholder.size()) + " bytes): choose a shorter prefix");
                    }
                } else {
                    replace_text(data.view(), e.placeholder, context_.prefix, emit);
                }
                out.sha256_in_prefix = writer.finish();
                out.size_in_bytes = writer.bytes();
                // Never the mtime of the unpatched file: a shipped .pyc compiled from it must not
                // look valid for the patched source.
                mtime += 1;
            } else if (!e.sha256.empty()) {
                copy_contents(job.src.get(), job.dst.get(), what_ + ": " + e.path.text);
                out.sha256_in_prefix = e.sha256;
                out.size_in_bytes = static_cast<std::uint64_t>(job.st.st_size);
            } else {
                HashingWriter writer(job.dst.get(), job.target);
                std::vector<char> buf(io_chunk);
                for (;;) {
                    const std::size_t n = core::read_full(job.src.get(), buf.data(), buf.size(), e.path.text);
                    if (n == 0) break;
                    writer.write(std::string_view(buf.data(), n));
                }
                out.sha256_in_prefix = writer.finish();
                out.size_in_bytes = writer.bytes();
            }
            set_mode_and_time(job.dst.get(), job.st.st_mode & 0777, mtime, job.target);
        } catch (...) {
            struct stat mine {};
            const auto now = stat_at(job.parent.get(), job.name);
            if (::fstat(job.dst.get(), &mine) == 0 && now && now->st_ino == mine.st_ino && now->st_dev == mine.st_dev)
                (void)::unlinkat(job.parent.get(), job.name.c_str(), 0);
            throw;
        }
    }

    LinkedPath write_entry_point(const EntryPoint& ep) {
        const RelPath target = checked_path("bin/" + ep.command, "info/link.json", what_);
        const std::string script = entry_point_script(ep, context_.prefix + "/" + context_.python->interpreter);
        const int parent = target_dirs_.parent(target, /*create=*/true, what_);
        remove_at(parent, target.name(), what_);
        const core::UniqueFd fd =
            open_at(parent, target.name(), O_WRONLY | O_CREAT | O_EXCL, 0600, what_ + ": " + target.text);
        core::write_all(fd.get(), script.data(), script.size(), target.text);
        set_mode_and_time(fd.get(), 0775, entry_point_mtime, target.text);
        LinkedPath out;
        out.path = target.text;
        out.path_type = "unix_python_entry_point";
        out.sha256 = std::string(core::Digest::of(script).hex());
        out.sha256_in_prefix = out.sha256;
        out.size_in_bytes = script.size();
        return out;
    }

    const PackageRecord& record_;
    const LinkContext& context_;
    int package_fd_;
    std::string what_;
    DirWalker source_dirs_;
    DirWalker target_dirs_;
};

}  // namespace

void replace_text(std::string_view data, std::string_view placeholder, std::string_view prefix, const Emit& emit) {
    if (placeholder.empty()) {
        emit(data);
        return;
    }
    const Finder finder(placeholder);
    if (!data.starts_with("#!")) {
        (void)replace_all(data, finder, prefix, emit);
        return;
    }
    const std::size_t line_end = std::min(data.find('\n'), data.size());
    std::string line;
    (void)replace_all(data.substr(0, line_end), finder, prefix, [&](std::string_view p) { line.append(p); });
    const auto rewritten = rewrite_shebang(line, prefix);
    emit(rewritten ? *rewritten : line);
    (void)replace_all(data.substr(line_end), finder, prefix, emit);
}

bool replace_binary(std::string_view data, std::string_view placeholder, std::string_view prefix, const Emit& emit) {
    if (placeholder.empty()) {
        emit(data);
        return true;
    }
    const Finder finder(placeholder);
    if (prefix.size() > placeholder.size()) {
        const std::size_t hit = finder.find(data, 0);
        if (hit != std::string_view::npos && data.find('\0', hit + placeholder.size()) != std::string_view::npos)
            return false;
    }
    // conda's binary_replace: placeholder, then up to the next NUL, is one C string.
    std::size_t pos = 0;
    for (;;) {
        const std::size_t hit = finder.find(data, pos);
        if (hit == std::string_view::npos) break;
        const std::size_t nul = data.find('\0', hit + placeholder.size());
        if (nul == std::string_view::npos) break;  // not a C string: left alone, as conda does
        emit(data.substr(pos, hit - pos));
        const std::size_t count = replace_all(data.substr(hit, nul - hit), finder, prefix, emit);
        emit(std::string(1 + count * (placeholder.size() - prefix.size()), '\0'));
        pos = nul + 1;
    }
    emit(data.substr(pos));
    return true;
}

std::optional<PythonInfo> find_python(const std::vector<PackageRecord>& packages) {
    for (const PackageRecord& r : packages) {
        if (r.name != "python") continue;
        const std::size_t first = r.version.find('.');
        const std::size_t second = first == std::string::npos ? std::string::npos : r.version.find('.', first + 1);
        if (first == std::string::npos || first == 0 || second == first + 1) {
            throw Error(ErrorCategory::invalid_input,
                        describe_package(r) + ": cannot tell the python X.Y from version \"" + r.version + "\"");
        }
        PythonInfo info;
        info.short_version = r.version.substr(0, second);
        std::string abi_suffix;
        if (!r.python_site_packages_path.empty()) {
            const auto sp = parse_rel_path(r.python_site_packages_path);
            if (!sp) {
                throw Error(ErrorCategory::invalid_input, describe_package(r) + ": python_site_packages_path \"" +
                                                              r.python_site_packages_path + "\" leaves the prefix");
            }
            info.site_packages = sp->text;
            // The free-threaded build (CEP 17's example) is lib/python3.13t/site-packages.
            if (info.site_packages.find("python" + info.short_version + "t/") != std::string::npos) abi_suffix = "t";
        } else {
            info.site_packages = "lib/python" + info.short_version + "/site-packages";
        }
        info.interpreter = "bin/python" + info.short_version + abi_suffix;
        return info;
    }
    return std::nullopt;
}

std::vector<LinkedPath> link_package(const PackageRecord& record, const std::string& package_dir,
                                     const LinkContext& context) {
    const core::UniqueFd package_fd = open_root(package_dir);
    return Linker(record, context, package_fd.get()).run();
}

}  // namespace ocibuild::conda::detail
