// Credential files as containers/image and docker read them (containers-auth.json(5),
// docker config.json), plus docker-credential-* helpers. Secrets never enter messages: JSON
// parse errors are reported by offset only, since nlohmann quotes the text it choked on.
#include "ocibuild/registry/credentials.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>

#include "ocibuild/core/atomic_file.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"

namespace ocibuild::registry {

namespace fs = std::filesystem;
using nlohmann::json;
using core::Error;
using core::ErrorCategory;

namespace {

constexpr std::uint64_t max_auth_file_size = 16ull << 20;
constexpr std::size_t max_helper_output = 1u << 20;
constexpr int helper_timeout_ms = 120'000;
constexpr std::string_view docker_hub_server_url = "https://index.docker.io/v1/";

// --- keys ----------------------------------------------------------------------------------------

std::string canonical_host(std::string_view host) {
    if (host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io") return "docker.io";
    return std::string(host);
}

// "https://index.docker.io/v1/" → "docker.io"; "quay.io/org/" → "quay.io/org". URL-style keys
// (legacy) name a registry only; bare keys may name a namespace.
std::string normalize_key(std::string_view key) {
    bool had_scheme = false;
    for (std::string_view prefix : {"https://", "http://"}) {
        if (key.starts_with(prefix)) {
            key.remove_prefix(prefix.size());
            had_scheme = true;
        }
    }
    if (had_scheme) key = key.substr(0, key.find('/'));
    if (auto slash = key.find('/'); slash != std::string_view::npos && key.substr(slash) == "/v1/")
        key = key.substr(0, slash);
    while (key.ends_with('/')) key.remove_suffix(1);
    auto slash = key.find('/');
    std::string out = canonical_host(key.substr(0, slash));
    if (slash != std::string_view::npos) out += key.substr(slash);
    return out;
}

// Most specific first: host/a/b, host/a, host.
std::vector<std::string> candidate_keys(std::string_view registry, std::string_view repository) {
    std::vector<std::string> out;
    const std::string host = normalize_key(registry);
    std::string key = host;
    if (!repository.empty()) key += "/" + std::string(repository);
    for (;;) {
        out.push_back(key);
        if (key.size() <= host.size()) break;
        key.erase(key.rfind('/'));
    }
    return out;
}

// --- base64 --------------------------------------------------------------------------------------

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                     static_cast<unsigned char>(in[i + 2]);
        for (int shift : {18, 12, 6, 0}) out += b64_alphabet[v >> shift & 63];
    }
    if (i < in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += b64_alphabet[v >> 18 & 63];
        out += b64_alphabet[v >> 12 & 63];
        out += i + 1 < in.size() ? b64_alphabet[v >> 6 & 63] : '=';
        out += '=';
    }
    return out;
}

// Accepts padded or unpadded standard base64; nullopt on anything else.
std::optional<std::string> base64_decode(std::string_view in) {
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        const char* p = std::find(b64_alphabet, b64_alphabet + 64, c);
        if (p == b64_alphabet + 64) return std::nullopt;
        acc = (acc << 6 | static_cast<unsigned>(p - b64_alphabet)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>(acc >> bits & 0xff);
        }
    }
    if (bits >= 6) return std::nullopt;  // a lone trailing character
    return out;
}

// --- files ---------------------------------------------------------------------------------------

struct AuthFile {
    fs::path path;
    bool legacy = false;  // ~/.dockercfg: the auths map is the whole document
};

// nullopt when the file does not exist.
std::optional<json> load_json(const fs::path& path) {
    std::string text;
    try {
        text = core::read_file(path, max_auth_file_size);
    } catch (const Error& e) {
        if (e.category() == ErrorCategory::not_found) return std::nullopt;
        throw;
    }
    try {
        json doc = json::parse(text);
        if (!doc.is_object()) throw Error(ErrorCategory::invalid_input, path.string() + ": not a JSON object");
        return doc;
    } catch (const json::parse_error& e) {
        throw Error(ErrorCategory::invalid_input,
                    path.string() + ": not valid JSON (at byte " + std::to_string(e.byte) + ")");
    }
}

const json* object_member(const json& doc, const char* name, const fs::path& path) {
    auto it = doc.find(name);
    if (it == doc.end() || it->is_null()) return nullptr;
    if (!it->is_object())
        throw Error(ErrorCategory::invalid_input, path.string() + ": \"" + name + "\" is not an object");
    return &*it;
}

std::string string_member(const json& obj, const char* name, const fs::path& path, const std::string& key) {
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return {};
    if (!it->is_string())
        throw Error(ErrorCategory::invalid_input,
                    path.string() + ": \"" + name + "\" of \"" + key + "\" is not a string");
    return it->get<std::string>();
}

// One auths entry; nullopt when it holds nothing usable (a marker for a credential helper).
std::optional<Credential> decode_entry(const json& entry, const fs::path& path, const std::string& key) {
    if (!entry.is_object())
        throw Error(ErrorCategory::invalid_input, path.string() + ": auths entry \"" + key + "\" is not an object");
    Credential c;
    if (auto auth = string_member(entry, "auth", path, key); !auth.empty()) {
        auto decoded = base64_decode(auth);
        auto colon = decoded ? decoded->find(':') : std::string::npos;
        if (colon == std::string::npos)
            throw Error(ErrorCategory::invalid_input,
                        path.string() + ": \"auth\" of \"" + key + "\" is not base64 of user:password");
        c.username = decoded->substr(0, colon);
        c.password = decoded->substr(colon + 1);
    } else {
        c.username = string_member(entry, "username", path, key);
        c.password = string_member(entry, "password", path, key);
    }
    c.identity_token = string_member(entry, "identitytoken", path, key);
    if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::nullopt;
    return c;
}

// --- credential helpers --------------------------------------------------------------------------

struct HelperRun {
    bool missing = false;  // not in PATH
    int status = 0;        // exit status, or 128 + signal
    std::string out;
    std::string err;
};

struct Pipe {
    core::UniqueFd read;
    core::UniqueFd write;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) core::throw_errno("cannot create a pipe");
        read.reset(fds[0]);
        write.reset(fds[1]);
    }
};

// Runs `program get` with `input` on stdin, capturing stdout and stderr. No shell.
HelperRun run_helper(const std::string& program, std::string_view input) {
    Pipe in, out, err;
    // The input fits the pipe buffer: write it before the child exists, so a child that exits
    // without reading cannot SIGPIPE us.
    core::write_all(in.write.get(), input.data(), input.size(), program + " stdin");
    in.write.reset();

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in.read.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out.write.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err.write.get(), 2);
    std::string arg0 = program;
    std::string arg1 = "get";
    char* argv[] = {arg0.data(), arg1.data(), nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc == ENOENT) return HelperRun{.missing = true};
    if (rc != 0) core::throw_errno(rc, "cannot run " + program);
    in.read.reset();
    out.write.reset();
    err.write.reset();

    HelperRun run;
    std::array<pollfd, 2> fds{pollfd{out.read.get(), POLLIN, 0}, pollfd{err.read.get(), POLLIN, 0}};
    std::array<std::string*, 2> dest{&run.out, &run.err};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(helper_timeout_ms);
    bool timed_out = false;
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buf[4096];
            ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                fds[i].fd = -1;  // EOF (the UniqueFd still owns it)
                continue;
            }
            if (dest[i]->size() < max_helper_output) dest[i]->append(buf, static_cast<std::size_t>(got));
        }
    }
    if (timed_out) ::kill(pid, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) throw Error(ErrorCategory::unavailable, program + " get: no answer within 120 s");
    run.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    return run;
}

std::string first_line(std::string_view s) {
    while (!s.empty() && (s.front() == '\n' || s.front() == ' ')) s.remove_prefix(1);
    s = s.substr(0, std::min(s.find('\n'), std::size_t{200}));
    return std::string(s);
}

// Asks docker-credential-<suffix>. `required`: a missing helper is an error (credHelpers names it
// for this host) rather than a reason to look elsewhere (credsStore, a default for every host).
std::optional<Credential> ask_helper(const std::string& suffix, const std::string& host, const fs::path& file,
                                     bool required) {
    if (suffix.empty() || suffix.find('/') != std::string::npos)
        throw Error(ErrorCategory::invalid_input,
                    file.string() + ": \"" + suffix + "\" is not a credential helper name");
    const std::string program = "docker-credential-" + suffix;
    const std::string server = host == "docker.io" ? std::string(docker_hub_server_url) : host;
    HelperRun run = run_helper(program, server);
    if (run.missing) {
        if (!required) return std::nullopt;
        throw Error(ErrorCategory::not_found,
                    file.string() + ": credential helper " + program + " for " + host + " is not in PATH");
    }
    if (run.status != 0) {
        if (run.out.find("credentials not found") != std::string::npos) return std::nullopt;
        std::string why = first_line(run.err.empty() ? run.out : run.err);
        throw Error(ErrorCategory::unavailable, program + " get " + server + ": exited with status " +
                                                    std::to_string(run.status) + (why.empty() ? "" : ": " + why));
    }
    auto doc = json::parse(run.out, nullptr, false);
    if (!doc.is_object() || !doc.contains("Secret") || !doc["Secret"].is_string())
        throw Error(ErrorCategory::unavailable, program + " get " + server + ": answered something other than credentials");
    Credential c;
    std::string user = doc.contains("Username") && doc["Username"].is_string() ? doc["Username"].get<std::string>() : "";
    if (user == "<token>") {
        c.identity_token = doc["Secret"].get<std::string>();
    } else {
        c.username = std::move(user);
        c.password = doc["Secret"].get<std::string>();
    }
    if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::nullopt;
    return c;
}

// --- lookup in one file --------------------------------------------------------------------------

std::optional<Credential> lookup_in(const AuthFile& file, const std::vector<std::string>& candidates) {
    auto doc = load_json(file.path);
    if (!doc) return std::nullopt;
    const std::string& host = candidates.back();

    if (!file.legacy) {
        if (const json* helpers = object_member(*doc, "credHelpers", file.path)) {
            for (const auto& [key, value] : helpers->items()) {
                if (normalize_key(key) != host) continue;
                if (!value.is_string())
                    throw Error(ErrorCategory::invalid_input,
                                file.path.string() + ": credHelpers entry \"" + key + "\" is not a string");
                if (auto c = ask_helper(value.get<std::string>(), host, file.path, true)) return c;
                break;
            }
        }
    }

    const json* auths = file.legacy ? &*doc : object_member(*doc, "auths", file.path);
    if (auths != nullptr) {
        for (const auto& candidate : candidates) {
            // The exact key first, then keys that normalise to it (URL forms, docker.io aliases).
            if (auto it = auths->find(candidate); it != auths->end())
                if (auto c = decode_entry(*it, file.path, candidate)) return c;
            for (const auto& [key, entry] : auths->items()) {
                if (key == candidate || normalize_key(key) != candidate) continue;
                if (auto c = decode_entry(entry, file.path, key)) return c;
            }
        }
    }

    if (!file.legacy) {
        if (auto it = doc->find("credsStore"); it != doc->end() && it->is_string() && !it->get<std::string>().empty())
            return ask_helper(it->get<std::string>(), host, file.path, false);
    }
    return std::nullopt;
}

// mkdir -p with mode 0700 for the directories it creates.
void create_private_dirs(const fs::path& dir) {
    if (dir.empty()) return;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return;
    if (dir.has_parent_path() && dir.parent_path() != dir) create_private_dirs(dir.parent_path());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) core::throw_errno("cannot create " + dir.string());
}

}  // namespace

// --- CredentialStore -----------------------------------------------------------------------------

std::optional<Credential> CredentialStore::lookup(std::string_view registry, std::string_view repository) const {
    std::vector<AuthFile> files;
    if (!paths_.authfile.empty()) {
        files.push_back({paths_.authfile});
    } else {
        files.push_back({!paths_.xdg_runtime_dir.empty()
                             ? paths_.xdg_runtime_dir / "containers/auth.json"
                             : fs::path("/run/containers") / std::to_string(paths_.uid) / "auth.json"});
        if (!paths_.xdg_config_home.empty()) {
            files.push_back({paths_.xdg_config_home / "containers/auth.json"});
        } else if (!paths_.home.empty()) {
            files.push_back({paths_.home / ".config/containers/auth.json"});
        }
        if (!paths_.docker_config.empty()) {
            files.push_back({paths_.docker_config / "config.json"});
        } else if (!paths_.home.empty()) {
            files.push_back({paths_.home / ".docker/config.json"});
        }
        if (!paths_.home.empty()) files.push_back({paths_.home / ".dockercfg", true});
    }

    const auto candidates = candidate_keys(registry, repository);
    for (const auto& file : files)
        if (auto c = lookup_in(file, candidates)) return c;
    return std::nullopt;
}

fs::path CredentialStore::login_file() const {
    if (!paths_.authfile.empty()) return paths_.authfile;
    if (!paths_.xdg_runtime_dir.empty()) return paths_.xdg_runtime_dir / "containers/auth.json";
    return fs::path("/run/containers") / std::to_string(paths_.uid) / "auth.json";
}

void CredentialStore::login(std::string_view key, const Credential& credential) const {
    const std::string normalized = normalize_key(key);
    if (normalized.empty()) throw Error(ErrorCategory::invalid_input, "login needs a registry name");
    const fs::path path = login_file();
    json doc = load_json(path).value_or(json::object());
    json& auths = doc["auths"];
    if (auths.is_null()) auths = json::object();
    if (!auths.is_object()) throw Error(ErrorCategory::invalid_input, path.string() + ": \"auths\" is not an object");

    for (auto it = auths.begin(); it != auths.end();) {
        it = normalize_key(it.key()) == normalized ? auths.erase(it) : std::next(it);
    }
    json entry = json::object();
    if (!credential.username.empty()) entry["auth"] = base64_encode(credential.username + ":" + credential.password);
    if (!credential.identity_token.empty()) entry["identitytoken"] = credential.identity_token;
    auths[normalized] = std::move(entry);

    create_private_dirs(path.parent_path());
    core::write_file_atomic(path, doc.dump(1, '\t') + "\n", 0600);
}

bool CredentialStore::logout(std::string_view key) const {
    const std::string normalized = normalize_key(key);
    const fs::path path = login_file();
    auto doc = load_json(path);
    if (!doc) return false;
    const json* auths = object_member(*doc, "auths", path);
    if (auths == nullptr) return false;

    json& mutable_auths = (*doc)["auths"];
    bool removed = false;
    for (auto it = mutable_auths.begin(); it != mutable_auths.end();) {
        if (normalize_key(it.key()) == normalized) {
            it = mutable_auths.erase(it);
            removed = true;
        } else {
            ++it;
        }
    }
    if (!removed) return false;
    core::write_file_atomic(path, doc->dump(1, '\t') + "\n", 0600);
    return true;
}

}  // namespace ocibuild::registry
