// Turning a RunSpec into a Plan: every check and decision that can be made before fork.
#include "plan.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "ocibuild/core/error.hpp"

namespace ocibuild::sandbox {

namespace {

constexpr const char* default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

[[noreturn]] void invalid(const std::string& message) {
    throw core::Error(core::ErrorCategory::invalid_input, message);
}

// "/var//cache/./apt/" → "var/cache/apt"; refuses "..", which could not mean anything sane here.
std::string relative_in_root(const std::string& path, const char* what) {
    if (path.empty() || path.front() != '/') invalid(std::string(what) + " \"" + path + "\" is not an absolute path");
    std::string out;
    std::size_t i = 0;
    while (i < path.size()) {
        auto j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        auto part = path.substr(i, j - i);
        i = j + 1;
        if (part.empty() || part == ".") continue;
        if (part == "..") invalid(std::string(what) + " \"" + path + "\" contains \"..\"");
        if (!out.empty()) out += '/';
        out += part;
    }
    return out;
}

struct stat stat_or_throw(const std::filesystem::path& path, const char* what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) core::throw_errno(std::string(what) + " " + path.string());
    return st;
}

void require_dir(const std::filesystem::path& path, const char* what) {
    if (path.empty()) invalid(std::string(what) + " is not set");
    if (!S_ISDIR(stat_or_throw(path, what).st_mode))
        invalid(std::string(what) + " " + path.string() + " is not a directory");
}

bool under(const std::string& rel, const char* top) {
    std::string t(top);
    return rel == t || rel.compare(0, t.size() + 1, t + "/") == 0;
}

void plan_rootfs(const RunSpec& spec, Plan& plan) {
    plan.overlay = !spec.lowerdirs.empty();
    if (!plan.overlay) {
        require_dir(spec.rootfs, "rootfs");
        plan.rootfs = std::filesystem::absolute(spec.rootfs).string();
        return;
    }
    for (const auto& l : spec.lowerdirs) {
        require_dir(l, "lowerdir");
        plan.lowerdirs.push_back(std::filesystem::absolute(l).string());
    }
    require_dir(spec.upperdir, "upperdir");
    require_dir(spec.workdir, "workdir");
    plan.upperdir = std::filesystem::absolute(spec.upperdir).string();
    plan.workdir = std::filesystem::absolute(spec.workdir).string();
}

// /proc, /dev and /sys always; the host's resolv.conf and hosts when it has them; then the binds.
void plan_mounts(const RunSpec& spec, Plan& plan) {
    plan.mount_points = {{"proc", true, false}, {"dev", true, false}, {"sys", true, false}};
    for (const char* file : {"/etc/resolv.conf", "/etc/hosts"}) {
        struct stat st {};
        if (::stat(file, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        plan.mount_points.push_back({file + 1, false, true});
        plan.binds.push_back({file, file + 1, true, true});
    }
    for (const auto& b : spec.binds) {
        auto target = relative_in_root(b.target, "bind target");
        if (target.empty()) invalid("bind target \"/\" would hide the root filesystem");
        for (const char* top : {"proc", "dev", "sys"})
            if (under(target, top))
                invalid("bind target \"" + b.target + "\" is under /" + top + ", which the sandbox mounts itself");
        auto st = stat_or_throw(b.source, "bind source");
        plan.mount_points.push_back({target, S_ISDIR(st.st_mode), false});
        plan.binds.push_back({std::filesystem::absolute(b.source).string(), target, b.read_only, false});
    }
}

}  // namespace

std::vector<std::string> exec_candidates(const std::string& argv0, const std::vector<std::string>& env) {
    if (argv0.find('/') != std::string::npos) return {argv0};
    std::string path = default_path;
    for (const auto& e : env)
        if (e.compare(0, 5, "PATH=") == 0) path = e.substr(5);
    std::vector<std::string> out;
    std::size_t i = 0;
    for (;;) {
        auto j = path.find(':', i);
        auto dir = path.substr(i, j == std::string::npos ? std::string::npos : j - i);
        out.push_back((dir.empty() ? std::string(".") : dir) + "/" + argv0);
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return out;
}

std::string overlay_options(const std::vector<std::string>& lowers, const std::string& upper,
                            const std::string& work, bool userxattr) {
    std::string opts = "lowerdir=";
    for (std::size_t i = 0; i < lowers.size(); ++i) opts += (i ? ":" : "") + lowers[i];
    opts += ",upperdir=" + upper + ",workdir=" + work;
    opts += ",index=off,metacopy=off,volatile";
    // userxattr implies redirect_dir=nofollow and refuses any other value (a kernel built with
    // REDIRECT_ALWAYS_FOLLOW reads "off" as "follow"); in trusted mode "off" never creates one.
    opts += userxattr ? ",userxattr" : ",redirect_dir=off";
    return opts;
}

Plan make_plan(const RunSpec& spec, const IdMaps& ids) {
    if (spec.argv.empty() || spec.argv[0].empty()) invalid("the step has no command");
    Plan plan;
    plan.id_writer = idmap::writer_for(ids);
    // After setgroups=deny the namespace can never call setgroups(2) (see user_namespaces(7)).
    plan.can_setgroups = plan.id_writer != idmap::Writer::self_single;
    // In a user namespace only user.* xattrs are ours to set, so overlay must use them.
    plan.userxattr = plan.id_writer != idmap::Writer::none;
    plan.new_netns = !spec.network;

    plan_rootfs(spec, plan);
    plan_mounts(spec, plan);
    plan.hostname = spec.hostname.empty() ? "ocibuild" : spec.hostname;
    plan.shm_bytes = spec.shm_bytes;

    plan.cwd = "/" + relative_in_root(spec.cwd.empty() ? "/" : spec.cwd, "cwd");
    plan.user = spec.user;
    plan.argv = spec.argv;
    plan.env = spec.env;
    plan.exec_candidates = exec_candidates(spec.argv[0], spec.env);
    plan.stdin_fd = spec.stdin_fd;
    plan.stdout_fd = spec.stdout_fd;
    plan.stderr_fd = spec.stderr_fd;
    return plan;
}

}  // namespace ocibuild::sandbox
