#pragma once
// What every verb shares: the environment (read only here), the store, registry flags, progress.
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ocibuild/build/builder.hpp"
#include "ocibuild/oci/platform.hpp"
#include "ocibuild/registry/client.hpp"
#include "ocibuild/store/store.hpp"

namespace ocibuild::cli {

/// A mistake in how the command was called: exit code 2.
class UsageError : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[nodiscard]] std::string env_or(const char* name, const std::string& fallback = {});
/// --store, else $OCIBUILD_STORE, else $XDG_DATA_HOME/ocibuild/store, else ~/.local/share/ocibuild/store.
[[nodiscard]] store::Store open_store(const std::string& flag);
/// Where builds keep extracted layers, cache mounts and scratch space: STORE-work beside the store.
[[nodiscard]] std::filesystem::path work_dir_for(const store::Store& store);
/// SIGINT/SIGTERM set the returned flag (a running step is then killed and the build stops).
[[nodiscard]] const std::atomic<bool>* install_cancel_handler();
/// --platform, else the machine's own (linux/amd64, linux/arm64, ...).
[[nodiscard]] oci::Platform platform_or_host(const std::string& flag);
[[nodiscard]] registry::Reference parse_reference(const std::string& text);

/// Flags every verb that talks to registries takes.
struct RegistryFlags {
    std::vector<std::string> insecure;
    std::vector<std::string> cert_dirs;
    std::string authfile;
    std::string creds;  // user:password
    bool quiet = false;

    void add_to(CLI::App& cmd);
    /// A client wired with credentials (flags, then files) and a progress printer on stderr.
    /// --creds applies to `registries` (the ones the command names).
    [[nodiscard]] std::unique_ptr<registry::RegistryClient> make_client(const std::vector<std::string>& registries = {});
    [[nodiscard]] registry::CredentialStore credential_store() const;

private:
    std::unique_ptr<registry::TransferProgress> progress_;
};

/// Conda flags `build` and `lock` share, plus CONDA_OVERRIDE_* from the environment.
struct CondaFlags {
    std::string channel_alias;
    std::vector<std::string> mirrors;  // PREFIX=URL
    std::string lock_file;
    bool locked = false;

    /// `with_locked`: also --locked (build only).
    void add_to(CLI::App& cmd, bool with_locked);
    /// Into options.conda, options.lock_file and options.locked; throws UsageError for a bad --mirror.
    void apply(build::BuildOptions& options) const;
};

/// --mirror PREFIX=URL values (repeatable) → prefix → URLs in order; throws UsageError for a bad one.
[[nodiscard]] std::map<std::string, std::vector<std::string>> parse_mirror_flags(const std::vector<std::string>& flags);

/// CONDA_OVERRIDE_{ARCHSPEC,CUDA,CUDA_ARCH,GLIBC,LINUX} as set ("CUDA" → "12.4"); set-but-empty
/// counts (it removes the virtual package).
[[nodiscard]] std::map<std::string, std::string> conda_override_env();

/// A verb: its CLI11 subcommand and what runs when it was chosen (returns the exit code).
struct Command {
    CLI::App* app;
    std::function<int()> run;
};

Command add_build_command(CLI::App& app);
std::vector<Command> add_image_commands(CLI::App& app);  // pull, push, inspect
std::vector<Command> add_login_commands(CLI::App& app);  // login, logout
Command add_unpack_command(CLI::App& app);
std::vector<Command> add_lock_commands(CLI::App& app);  // lock, export
Command add_solve_command(CLI::App& app);

}  // namespace ocibuild::cli
