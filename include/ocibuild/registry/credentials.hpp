#pragma once
// Registry credentials, found where podman, skopeo and docker look, in their order:
//   --authfile / REGISTRY_AUTH_FILE (replaces the list), ${XDG_RUNTIME_DIR}/containers/auth.json,
//   ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, $DOCKER_CONFIG/config.json or
//   ~/.docker/config.json (auths, identitytoken, credHelpers, credsStore), ~/.dockercfg.
// Keys may name a registry or a namespace (quay.io/org/repo), most specific first; docker.io,
// index.docker.io, registry-1.docker.io and https://index.docker.io/v1/ are one registry.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ocibuild::registry {

struct Credential {
    std::string username;
    std::string password;
    std::string identity_token;  // an OAuth2 refresh token (docker's identitytoken)
};

/// Where to look. The CLI fills this from flags and the environment; this module reads no env.
struct CredentialPaths {
    std::filesystem::path authfile;        // explicit (--authfile or REGISTRY_AUTH_FILE): only this file
    std::filesystem::path xdg_runtime_dir;
    std::filesystem::path xdg_config_home;  // default ~/.config
    std::filesystem::path docker_config;    // $DOCKER_CONFIG (a directory)
    std::filesystem::path home;
    unsigned uid = 0;  // for /run/containers/<uid>/auth.json when xdg_runtime_dir is empty
};

class CredentialStore {
public:
    explicit CredentialStore(CredentialPaths paths) : paths_(std::move(paths)) {}

    /// Credentials for `repository` (e.g. "ml/pytorch") on `registry` ("host:port" or "docker.io").
    /// Runs docker-credential-<helper> get when a credHelpers/credsStore entry applies. Throws
    /// core::Error naming the file on a malformed file; never puts a secret in a message.
    [[nodiscard]] std::optional<Credential> lookup(std::string_view registry, std::string_view repository) const;

    /// The file `login`/`logout` write: the explicit authfile, else ${XDG_RUNTIME_DIR}/containers/auth.json,
    /// else /run/containers/<uid>/auth.json (as podman login).
    [[nodiscard]] std::filesystem::path login_file() const;
    /// Stores `credential` for `key` (registry or namespace) in login_file(), atomically, mode 0600,
    /// keeping every other entry.
    void login(std::string_view key, const Credential& credential) const;
    /// Removes `key` from login_file(); returns false when it was not there.
    bool logout(std::string_view key) const;

private:
    CredentialPaths paths_;
};

}  // namespace ocibuild::registry
