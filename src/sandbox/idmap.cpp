// Id maps: what a sandbox started by this process gets, and how the parent writes them.
#include "idmap.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::sandbox {

namespace {

constexpr std::uint32_t all_ids = 4294967295u;  // 2^32 - 1: the init namespace's map length

std::optional<std::uint32_t> map_id(const std::vector<IdMapping>& maps, std::uint32_t id, bool to_host) {
    for (const auto& m : maps) {
        std::uint32_t from = to_host ? m.inside : m.outside;
        std::uint32_t to = to_host ? m.outside : m.inside;
        if (id >= from && id - from < m.count) return to + (id - from);
    }
    return std::nullopt;
}

std::uint64_t total(const std::vector<IdMapping>& maps) {
    std::uint64_t n = 0;
    for (const auto& m : maps) n += m.count;
    return n;
}

}  // namespace

bool IdMaps::full() const { return total(uids) > 1 && total(gids) > 1; }

std::optional<std::uint32_t> IdMaps::to_host_uid(std::uint32_t inside) const { return map_id(uids, inside, true); }
std::optional<std::uint32_t> IdMaps::to_host_gid(std::uint32_t inside) const { return map_id(gids, inside, true); }
std::optional<std::uint32_t> IdMaps::to_sandbox_uid(std::uint32_t outside) const {
    return map_id(uids, outside, false);
}
std::optional<std::uint32_t> IdMaps::to_sandbox_gid(std::uint32_t outside) const {
    return map_id(gids, outside, false);
}

namespace idmap {

namespace {

std::optional<std::uint32_t> parse_u32(std::string_view s) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::string read_small_file(const std::filesystem::path& path) {
    try {
        return core::read_file(path, 16u << 20);
    } catch (const core::Error&) {
        return {};  // a missing or unreadable subid file grants nothing
    }
}

std::string user_name(uid_t uid) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::string buf(16384, '\0');
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return {};
    return pw.pw_name;
}

std::string render_map(const std::vector<IdMapping>& maps) {
    std::string text;
    for (const auto& m : maps)
        text += std::to_string(m.inside) + ' ' + std::to_string(m.outside) + ' ' + std::to_string(m.count) + '\n';
    return text;
}

void write_proc_file(pid_t pid, const char* name, const std::string& text) {
    auto path = "/proc/" + std::to_string(pid) + "/" + name;
    auto fd = core::open_file(path, O_WRONLY);
    // One write(2): the kernel takes a map file in a single call only.
    ssize_t n = ::write(fd.get(), text.data(), text.size());
    if (n != static_cast<ssize_t>(text.size()))
        core::throw_errno(n < 0 ? errno : EIO,
                          "cannot write " + path + " (\"" + text.substr(0, text.find('\n')) + "\")");
}

// Runs newuidmap/newgidmap with a clean environment; returns its exit status and what it printed.
std::pair<int, std::string> run_helper(const std::filesystem::path& tool, const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) core::throw_errno("cannot create a pipe for " + tool.string());
    core::UniqueFd rd(out[0]), wr(out[1]);
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
    ::posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    char* envp[] = {nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, tool.c_str(), &fa, nullptr, argv.data(), envp);
    ::posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) core::throw_errno(rc, "cannot run " + tool.string());
    wr.reset();
    std::string text;
    char buf[1024];
    for (;;) {
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (text.size() < 4096) text.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return {status, text};
}

void run_map_helper(const char* name, pid_t pid, const std::vector<IdMapping>& maps) {
    auto tool = find_setuid_helper(name);
    if (tool.empty())
        throw core::Error(core::ErrorCategory::unsupported,
                          std::string("mapping subordinate ids needs ") + name +
                              " (setuid root; Debian/Ubuntu package \"uidmap\"), which is not installed");
    std::vector<std::string> args{name, std::to_string(pid)};
    for (const auto& m : maps) {
        args.push_back(std::to_string(m.inside));
        args.push_back(std::to_string(m.outside));
        args.push_back(std::to_string(m.count));
    }
    auto [status, text] = run_helper(tool, args);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw core::Error(core::ErrorCategory::unauthorized,
                          tool.string() + " refused the map \"" + render_map(maps).substr(0, 200) +
                              "\": " + (text.empty() ? std::string("no message") : text) +
                              " (check this user's ranges in /etc/subuid and /etc/subgid)");
}

}  // namespace

std::vector<SubidRange> parse_subid_ranges(std::string_view text, std::string_view name, std::uint32_t id) {
    std::vector<SubidRange> ranges;
    auto id_text = std::to_string(id);
    while (!text.empty()) {
        auto eol = text.find('\n');
        auto line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        if (line.empty() || line.front() == '#') continue;
        auto c1 = line.find(':');
        auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
        if (c2 == std::string_view::npos) continue;
        auto owner = line.substr(0, c1);
        if (owner != id_text && (name.empty() || owner != name)) continue;
        auto start = parse_u32(line.substr(c1 + 1, c2 - c1 - 1));
        auto count = parse_u32(line.substr(c2 + 1));
        if (!start || !count || *count == 0) continue;
        ranges.push_back({*start, *count});
    }
    return ranges;
}

std::vector<IdMapping> layout(std::uint32_t self, const std::vector<SubidRange>& ranges) {
    std::vector<IdMapping> maps{{0, self, 1}};
    std::uint32_t next = 1;
    for (const auto& r : ranges) {
        if (maps.size() == 340 || next == all_ids) break;
        std::uint32_t room = all_ids - next;
        std::uint32_t count = r.count < room ? r.count : room;
        maps.push_back({next, r.start, count});
        next += count;
    }
    return maps;
}

std::filesystem::path find_setuid_helper(std::string_view name) {
    for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin"}) {
        std::filesystem::path p = std::filesystem::path(dir) / name;
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) continue;
        if ((st.st_mode & S_ISUID) && st.st_uid == 0) return p;
        // Fedora and others ship newuidmap with file capabilities (cap_setuid=ep) instead of setuid.
        if (::getxattr(p.c_str(), "security.capability", nullptr, 0) > 0) return p;
    }
    return {};
}

bool is_identity(const IdMaps& ids) {
    auto identity = [](const std::vector<IdMapping>& m) {
        return m.size() == 1 && m[0].inside == 0 && m[0].outside == 0 && m[0].count == all_ids;
    };
    return identity(ids.uids) && identity(ids.gids);
}

Writer writer_for(const IdMaps& ids) {
    if (::geteuid() == 0) return is_identity(ids) ? Writer::none : Writer::as_root;
    auto self_only = [](const std::vector<IdMapping>& m, std::uint32_t self) {
        return m.size() == 1 && m[0].inside == 0 && m[0].outside == self && m[0].count == 1;
    };
    if (self_only(ids.uids, ::geteuid()) && self_only(ids.gids, ::getegid())) return Writer::self_single;
    return Writer::helpers;
}

void write_id_maps(pid_t pid, const IdMaps& ids, Writer writer) {
    switch (writer) {
        case Writer::none: return;
        case Writer::self_single:
            // An unprivileged process may map only its own ids, and its own gid only once
            // setgroups(2) is denied in the namespace (else dropping a group could grant access).
            write_proc_file(pid, "setgroups", "deny");
            write_proc_file(pid, "uid_map", render_map(ids.uids));
            write_proc_file(pid, "gid_map", render_map(ids.gids));
            return;
        case Writer::as_root:
            write_proc_file(pid, "uid_map", render_map(ids.uids));
            write_proc_file(pid, "gid_map", render_map(ids.gids));
            return;
        case Writer::helpers:
            run_map_helper("newuidmap", pid, ids.uids);
            run_map_helper("newgidmap", pid, ids.gids);
            return;
    }
}

}  // namespace idmap

IdMaps detect_id_maps(const std::filesystem::path& subuid_file, const std::filesystem::path& subgid_file) {
    const std::uint32_t uid = ::geteuid();
    const std::uint32_t gid = ::getegid();
    if (uid == 0) return IdMaps{{{0, 0, all_ids}}, {{0, 0, all_ids}}};
    IdMaps single{{{0, uid, 1}}, {{0, gid, 1}}};
    auto name = idmap::user_name(uid);
    auto uranges = idmap::parse_subid_ranges(idmap::read_small_file(subuid_file), name, uid);
    // subgid is keyed by the user too (shadow's newgidmap checks the caller's name or uid).
    auto granges = idmap::parse_subid_ranges(idmap::read_small_file(subgid_file), name, uid);
    if (uranges.empty() || granges.empty()) return single;
    if (idmap::find_setuid_helper("newuidmap").empty() || idmap::find_setuid_helper("newgidmap").empty())
        return single;
    return IdMaps{idmap::layout(uid, uranges), idmap::layout(gid, granges)};
}

bool uses_user_namespace(const IdMaps& ids) { return idmap::writer_for(ids) != idmap::Writer::none; }

}  // namespace ocibuild::sandbox
