// login and logout: the same auth.json podman, buildah and skopeo use.
#include <termios.h>
#include <unistd.h>

#include <iostream>

#include "common.hpp"
#include "ocibuild/core/error.hpp"

namespace ocibuild::cli {

namespace {

// "https://host:5000/v1/" → "host:5000"; "index.docker.io" → "docker.io".
std::string registry_key(std::string host) {
    for (std::string_view prefix : {"https://", "http://"})
        if (host.starts_with(prefix)) host = host.substr(prefix.size());
    while (host.ends_with("/")) host.pop_back();
    if (host.ends_with("/v1")) host.resize(host.size() - 3);
    if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
    if (host.empty() || host.find_first_of(" \t\n") != std::string::npos) throw UsageError("bad registry \"" + host + "\"");
    return host;
}

std::string read_password_from_terminal() {
    std::cerr << "Password: " << std::flush;
    termios old {};
    bool tty = ::tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::string password;
    std::getline(std::cin, password);
    if (tty) ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << '\n';
    return password;
}

struct LoginArgs {
    std::string registry;
    std::string username;
    std::string password;
    bool password_stdin = false;
    RegistryFlags flags;
};

int run_login(LoginArgs& args) {
    auto key = registry_key(args.registry);
    auto host = key.substr(0, key.find('/'));  // a namespace key logs in to its registry
    if (args.username.empty()) throw UsageError("login needs --username (-u)");
    std::string password = args.password;
    if (args.password_stdin) {
        std::getline(std::cin, password);
        if (!password.empty() && password.back() == '\r') password.pop_back();
    } else if (password.empty()) {
        password = read_password_from_terminal();
    }
    if (password.empty()) throw UsageError("empty password");
    args.flags.quiet = true;
    auto store = args.flags.credential_store();
    // Check the credentials against the registry before storing them (the flags' client, with
    // these credentials ahead of any stored ones).
    args.flags.creds = args.username + ":" + password;
    auto verifier = args.flags.make_client({host});
    core::with_context("logging in to " + host, [&] { verifier->check_auth(host); });
    store.login(key, registry::Credential{args.username, password, {}});
    std::cerr << "Login Succeeded (credentials in " << store.login_file().string() << ")\n";
    return 0;
}

struct LogoutArgs {
    std::string registry;
    RegistryFlags flags;
};

int run_logout(LogoutArgs& args) {
    auto key = registry_key(args.registry);
    auto store = args.flags.credential_store();
    if (!store.logout(key))
        throw core::Error(core::ErrorCategory::not_found,
                          "not logged in to " + key + " (in " + store.login_file().string() + ")");
    std::cerr << "Removed login credentials for " << key << '\n';
    return 0;
}

}  // namespace

std::vector<Command> add_login_commands(CLI::App& app) {
    std::vector<Command> commands;
    {
        auto args = std::make_shared<LoginArgs>();
        auto* cmd = app.add_subcommand("login", "Log in to a registry (writes containers auth.json)");
        cmd->add_option("registry", args->registry, "Registry host[:port]")->required();
        cmd->add_option("-u,--username", args->username, "User name");
        cmd->add_option("-p,--password", args->password, "Password (prefer --password-stdin)");
        cmd->add_flag("--password-stdin", args->password_stdin, "Read the password from standard input");
        cmd->add_option("--authfile", args->flags.authfile, "Credentials file to write (default $REGISTRY_AUTH_FILE or ${XDG_RUNTIME_DIR}/containers/auth.json)");
        cmd->add_option("--cert-dir", args->flags.cert_dirs, "Folder with <host:port>/ca.crt");
        cmd->add_option("--insecure-registry", args->flags.insecure, "Reach this registry over plain HTTP or unverified TLS");
        commands.push_back({cmd, [args] { return run_login(*args); }});
    }
    {
        auto args = std::make_shared<LogoutArgs>();
        auto* cmd = app.add_subcommand("logout", "Remove a registry's credentials from auth.json");
        cmd->add_option("registry", args->registry, "Registry host[:port]")->required();
        cmd->add_option("--authfile", args->flags.authfile, "Credentials file (default $REGISTRY_AUTH_FILE or ${XDG_RUNTIME_DIR}/containers/auth.json)");
        commands.push_back({cmd, [args] { return run_logout(*args); }});
    }
    return commands;
}

}  // namespace ocibuild::cli
