#include "common.hpp"

#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>

namespace ocibuild::cli {

namespace fs = std::filesystem;

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

store::Store open_store(const std::string& flag) {
    fs::path path;
    if (!flag.empty()) path = flag;
    else if (auto s = env_or("OCIBUILD_STORE"); !s.empty()) path = s;
    else if (auto x = env_or("XDG_DATA_HOME"); !x.empty()) path = fs::path(x) / "ocibuild" / "store";
    else if (auto home = env_or("HOME"); !home.empty()) path = fs::path(home) / ".local/share/ocibuild/store";
    else throw UsageError("HOME is not set; pass --store DIR");
    return store::Store::open(path);
}

std::filesystem::path work_dir_for(const store::Store& store) {
    auto root = store.root();
    if (root.filename().empty()) root = root.parent_path();
    return root.parent_path() / (root.filename().string() + "-work");
}

namespace {
std::atomic<bool> cancel_requested{false};
extern "C" void on_cancel_signal(int) { cancel_requested.store(true); }
}  // namespace

const std::atomic<bool>* install_cancel_handler() {
    struct sigaction sa {};
    sa.sa_handler = on_cancel_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    return &cancel_requested;
}

oci::Platform platform_or_host(const std::string& flag) {
    if (!flag.empty()) {
        auto p = oci::Platform::parse(flag);
        if (!p) throw UsageError("bad --platform \"" + flag + "\": " + p.error().message);
        return *p;
    }
    struct utsname u {};
    ::uname(&u);
    std::string machine = u.machine;
    if (machine == "x86_64") return {"linux", "amd64", "", "", {}};
    if (machine == "aarch64") return {"linux", "arm64", "", "", {}};
    if (machine == "ppc64le") return {"linux", "ppc64le", "", "", {}};
    if (machine == "s390x") return {"linux", "s390x", "", "", {}};
    return {"linux", machine, "", "", {}};
}

void CondaFlags::add_to(CLI::App& cmd, bool with_locked) {
    cmd.add_option("--channel-alias", channel_alias,
                   "Where bare conda channel names live (default: the recipe's [conda] channel_alias, else "
                   "https://conda.anaconda.org)");
    cmd.add_option("--mirror", mirrors,
                   "PREFIX=URL: fetch conda URLs under PREFIX from URL instead (repeatable; replaces the recipe's "
                   "mirrors of that prefix)");
    cmd.add_option("--lock-file", lock_file, "The lock file (default: beside the recipe, RECIPE-STEM.lock)");
    if (with_locked)
        cmd.add_flag("--locked", locked,
                     "Fail unless the lock file exists and matches the recipe and base image (no solving)");
}

void CondaFlags::apply(build::BuildOptions& options) const {
    options.conda.channel_alias = channel_alias;
    options.conda.mirrors = parse_mirror_flags(mirrors);
    options.conda.override_env = conda_override_env();
    options.lock_file = lock_file;
    options.locked = locked;
}

std::map<std::string, std::vector<std::string>> parse_mirror_flags(const std::vector<std::string>& flags) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& m : flags) {
        auto eq = m.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
            throw UsageError("bad --mirror \"" + m + "\": expected PREFIX=URL, like https://conda.anaconda.org=https://mirror.example");
        out[m.substr(0, eq)].push_back(m.substr(eq + 1));
    }
    return out;
}

std::map<std::string, std::string> conda_override_env() {
    std::map<std::string, std::string> out;
    for (const char* key : {"ARCHSPEC", "CUDA", "CUDA_ARCH", "GLIBC", "LINUX"}) {
        const std::string name = std::string("CONDA_OVERRIDE_") + key;
        if (const char* value = std::getenv(name.c_str()); value != nullptr) out[key] = value;
    }
    return out;
}

registry::Reference parse_reference(const std::string& text) {
    auto ref = registry::Reference::parse(text);
    if (!ref)
        throw UsageError("bad reference \"" + text + "\": " + ref.error().message + " (at character " +
                         std::to_string(ref.error().offset + 1) + ")");
    return *ref;
}

namespace {
std::string human_bytes(double n) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (n >= 1000 && u < 4) {
        n /= 1000;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", n, units[u]);
    return buf;
}

// One line per blob when stderr is not a terminal; a live total with rate when it is.
class StderrProgress : public registry::TransferProgress {
public:
    StderrProgress() : tty_(::isatty(STDERR_FILENO) == 1), started_(std::chrono::steady_clock::now()) {}
    ~StderrProgress() override {
        if (tty_ && drawn_) std::cerr << '\n';
    }
    void start(const oci::Descriptor& blob, std::string_view action) override {
        std::lock_guard lock(mutex_);
        actions_[blob.digest.str()] = std::string(action);
        total_ += action == "pull" || action == "push" ? static_cast<std::uint64_t>(blob.size) : 0;
    }
    void advance(const oci::Descriptor&, std::uint64_t bytes) override {
        std::lock_guard lock(mutex_);
        done_ += bytes;
        if (tty_) draw();
    }
    void done(const oci::Descriptor& blob) override {
        std::lock_guard lock(mutex_);
        auto action = actions_[blob.digest.str()];
        std::string verb = action == "pull" ? "pulled" : action == "push" ? "pushed" : action == "mount" ? "mounted" : "exists";
        if (tty_) {
            std::cerr << "\r\033[K";
            drawn_ = false;
        }
        std::cerr << verb << ' ' << blob.digest.str().substr(0, 19) << ' ' << human_bytes(static_cast<double>(blob.size)) << '\n';
        if (tty_) draw();
    }

private:
    void draw() {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        std::cerr << "\r\033[K" << human_bytes(static_cast<double>(done_)) << " / " << human_bytes(static_cast<double>(total_))
                  << "  " << human_bytes(secs > 0 ? static_cast<double>(done_) / secs : 0) << "/s" << std::flush;
        drawn_ = true;
    }
    bool tty_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point started_;
    std::mutex mutex_;
    std::map<std::string, std::string> actions_;
    std::uint64_t total_ = 0;
    std::uint64_t done_ = 0;
};
}  // namespace

void RegistryFlags::add_to(CLI::App& cmd) {
    cmd.add_option("--insecure-registry", insecure, "Registry (host:port) reached over plain HTTP or unverified TLS (repeatable)");
    cmd.add_option("--cert-dir", cert_dirs, "Folder with <host:port>/ca.crt, client.cert, client.key (before /etc/containers/certs.d)");
    cmd.add_option("--authfile", authfile, "Credentials file (default $REGISTRY_AUTH_FILE, then containers auth.json, docker config.json)");
    cmd.add_option("--creds", creds, "USER:PASSWORD for the registry (prefer login)");
}

registry::CredentialStore RegistryFlags::credential_store() const {
    registry::CredentialPaths paths;
    paths.authfile = !authfile.empty() ? fs::path(authfile) : fs::path(env_or("REGISTRY_AUTH_FILE"));
    paths.xdg_runtime_dir = env_or("XDG_RUNTIME_DIR");
    paths.home = env_or("HOME");
    paths.xdg_config_home = env_or("XDG_CONFIG_HOME", paths.home.empty() ? "" : (paths.home / ".config").string());
    paths.docker_config = env_or("DOCKER_CONFIG");
    paths.uid = ::getuid();
    return registry::CredentialStore(paths);
}

std::unique_ptr<registry::RegistryClient> RegistryFlags::make_client(const std::vector<std::string>& registries) {
    registry::ClientOptions options;
    if (!creds.empty()) {
        auto colon = creds.find(':');
        if (colon == std::string::npos) throw UsageError("--creds must be USER:PASSWORD");
        for (const auto& r : registries)
            options.explicit_credentials[r] = registry::Credential{creds.substr(0, colon), creds.substr(colon + 1), {}};
    }
    options.insecure_registries.insert(insecure.begin(), insecure.end());
    std::vector<fs::path> dirs(cert_dirs.begin(), cert_dirs.end());
    dirs.insert(dirs.end(), options.cert_dirs.begin(), options.cert_dirs.end());
    options.cert_dirs = dirs;
    options.credentials = credential_store();
    if (!quiet) {
        progress_ = std::make_unique<StderrProgress>();
        options.progress = progress_.get();
    }
    return std::make_unique<registry::RegistryClient>(std::move(options));
}

}  // namespace ocibuild::cli
