// solve: resolve conda match specs against channels and print the answer, without building.
#include <gnu/libc-version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.hpp"
#include "ocibuild/conda/channel.hpp"
#include "ocibuild/conda/match_spec.hpp"
#include "ocibuild/conda/repodata.hpp"
#include "ocibuild/conda/repodata_fetch.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/conda/virtual_packages.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/registry/http.hpp"

namespace ocibuild::cli {

namespace {

namespace fs = std::filesystem;

struct SolveArgs {
    std::vector<std::string> specs;
    std::vector<std::string> channels;
    std::string platform;
    std::string channel_priority = "strict";
    std::vector<std::string> virtual_packages;  // NAME=VERSION[=BUILD]
    std::string channel_alias;
    std::vector<std::string> mirrors;  // FROM=TO
    std::string store;
    bool offline = false;
    bool json = false;
};

/// A --virtual-package flag: the "recipe" layer of the virtual packages.
struct VirtualPackageFlag {
    std::string name;
    std::string version;             // "" = absent
    std::optional<std::string> build;
};

VirtualPackageFlag parse_virtual_package_flag(const std::string& text) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || !text.starts_with("__") || eq <= 2)
        throw UsageError("bad --virtual-package \"" + text + "\": expected __NAME=VERSION[=BUILD], like __cuda=12.4");
    VirtualPackageFlag flag{text.substr(0, eq), text.substr(eq + 1), std::nullopt};
    if (const auto second = flag.version.find('='); second != std::string::npos) {
        flag.build = flag.version.substr(second + 1);
        flag.version.resize(second);
        if (flag.build->empty())
            throw UsageError("bad --virtual-package \"" + text + "\": empty build string after the second \"=\"");
    }
    if (flag.name == "__unix") throw UsageError("--virtual-package cannot change __unix: the platform sets it");
    return flag;
}

/// glibc of the build host ("2.36"): `solve` has no base image to look into.
std::optional<std::string> host_glibc() {
    const std::string version = ::gnu_get_libc_version();
    const auto first = version.find('.');
    if (first == std::string::npos) return std::nullopt;
    const auto second = version.find('.', first + 1);
    return version.substr(0, second);
}

conda::VirtualPackageSet solve_virtual_packages(const SolveArgs& args, const std::string& subdir) {
    conda::TargetFacts facts{subdir, {}, host_glibc()};
    std::map<std::string, std::string> flags;
    std::vector<VirtualPackageFlag> parsed;
    for (const auto& text : args.virtual_packages) {
        auto flag = parse_virtual_package_flag(text);
        // __archspec's value is the microarchitecture: __archspec=x86_64_v3 or __archspec=1=x86_64_v3.
        flags[flag.name] = flag.name == "__archspec" && flag.build ? *flag.build : flag.version;
        parsed.push_back(std::move(flag));
    }
    conda::VirtualPackageSet set;
    try {
        set = conda::virtual_packages(facts, flags, conda_override_env());
    } catch (const core::Error& e) {
        throw UsageError(e.what());
    }
    for (const auto& flag : parsed) {
        if (!flag.build || flag.name == "__archspec") continue;
        if (set.origin[flag.name] != "recipe virtual_packages") continue;  // a CONDA_OVERRIDE_* won
        for (auto& p : set.packages)
            if (p.name == flag.name) p.build = *flag.build;
    }
    // No image here: say so where messages would blame one.
    for (auto& [name, origin] : set.origin) {
        if (origin == "recipe virtual_packages") origin = "--virtual-package";
        if (origin == "base image libc") origin = "build host glibc";
    }
    for (auto& [name, reason] : set.absent_reason) {
        if (reason.starts_with("the recipe's virtual_packages")) reason = "--virtual-package " + name + "= removes it";
    }
    if (set.absent_reason.contains("__cuda") && set.absent_reason["__cuda"] == "the base image sets no CUDA_VERSION")
        set.absent_reason["__cuda"] =
            "`ocibuild solve` does not look for a GPU; pass --virtual-package __cuda=VERSION or set CONDA_OVERRIDE_CUDA";
    if (set.absent_reason.contains("__glibc") && set.absent_reason["__glibc"] == "the base image has no glibc")
        set.absent_reason["__glibc"] = "the build host has no glibc";
    return set;
}

std::string megabytes(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
    return buf;
}

void print_table(const std::vector<conda::PackageRecord>& records,
                 const std::map<std::string, std::string>& channel_names) {
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"name", "version", "build", "channel", "size"});
    std::uint64_t total = 0;
    for (const auto& r : records) {
        auto it = channel_names.find(r.channel);
        // Channels as the user wrote them, but never with a password or token.
        rows.push_back({r.name, r.version, r.build, conda::redact_url(it != channel_names.end() ? it->second : r.channel),
                        megabytes(r.size)});
        total += r.size;
    }
    std::vector<std::size_t> widths(rows.front().size(), 0);
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (i + 1 == row.size()) {  // size, right-aligned
                line += std::string(widths[i] - row[i].size(), ' ') + row[i];
            } else {
                line += row[i] + std::string(widths[i] - row[i].size() + 2, ' ');
            }
        }
        std::cout << line << '\n';
    }
    std::cout << records.size() << (records.size() == 1 ? " package, " : " packages, ") << megabytes(total) << '\n';
}

void print_json(const std::vector<conda::PackageRecord>& records) {
    auto out = nlohmann::json::array();
    for (const auto& r : records) {
        out.push_back({{"name", r.name},
                       {"version", r.version},
                       {"build", r.build},
                       {"build_number", r.build_number},
                       {"subdir", r.subdir},
                       {"url", conda::redact_url(r.url)},
                       {"sha256", r.sha256},
                       {"md5", r.md5},
                       {"size", r.size},
                       {"depends", r.depends},
                       {"constrains", r.constrains},
                       {"channel", conda::redact_url(r.channel)}});
    }
    std::cout << out.dump(2) << '\n';
}

int run_solve(SolveArgs& args) {
    for (const auto& spec : args.specs) {
        if (auto parsed = conda::MatchSpec::parse(spec); !parsed)
            throw UsageError("bad package spec \"" + spec + "\": " + parsed.error().message + " (at character " +
                             std::to_string(parsed.error().offset + 1) + ")");
    }
    const auto priority = conda::parse_channel_priority(args.channel_priority);
    if (!priority)
        throw UsageError("bad --channel-priority \"" + args.channel_priority + "\": expected strict, flexible or disabled");
    std::string subdir;
    try {
        subdir = conda::subdir_for(platform_or_host(args.platform));
    } catch (const core::Error& e) {
        throw UsageError(std::string("--platform: ") + e.what());
    }

    conda::ChannelConfig config;
    if (!args.channel_alias.empty()) {
        config.channel_alias = args.channel_alias;
        while (config.channel_alias.ends_with('/')) config.channel_alias.pop_back();
    }
    config.mirrors = parse_mirror_flags(args.mirrors);
    std::vector<conda::Channel> channels;
    std::map<std::string, std::string> channel_names;  // url → as written
    const fs::path cwd = fs::current_path();
    for (const auto& text : args.channels) {
        try {
            channels.push_back(conda::Channel::parse(text, config, cwd));
        } catch (const core::Error& e) {
            throw UsageError(e.what());
        }
        channel_names.emplace(channels.back().url, text);
    }
    const auto virtual_packages = solve_virtual_packages(args, subdir);

    const auto store = open_store(args.store);
    const registry::HttpClient http;
    conda::FetchOptions fetch;
    fetch.http = &http;
    fetch.channels = config;
    fetch.cache_dir = work_dir_for(store) / "conda" / "repodata";
    fetch.offline = args.offline;
    fetch.log = [](std::string_view line) { std::cerr << line << '\n'; };

    using Clock = std::chrono::steady_clock;
    const auto started = Clock::now();
    const auto repodata = conda::load_channels(channels, subdir, fetch);
    const auto loaded = Clock::now();

    conda::SolveRequest request;
    request.specs = args.specs;
    request.priority = *priority;
    request.virtual_packages = virtual_packages;
    std::size_t records = 0;
    for (std::size_t c = 0; c < channels.size(); ++c) {
        std::vector<const conda::RepoData*> subdirs;
        for (const auto& r : repodata[c]) {
            subdirs.push_back(&r);
            records += r.size();
        }
        request.channels.push_back(std::move(subdirs));
        request.channel_names.push_back(channels[c].name);
    }
    auto answer = conda::solve(request);
    const auto solved = Clock::now();
    std::sort(answer.begin(), answer.end(),
              [](const conda::PackageRecord& a, const conda::PackageRecord& b) { return a.name < b.name; });

    const auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
    std::cerr << "solve: loaded " << records << " records in " << ms(loaded - started) << " ms, solved in "
              << ms(solved - loaded) << " ms\n";
    if (args.json)
        print_json(answer);
    else
        print_table(answer, channel_names);
    return 0;
}

}  // namespace

Command add_solve_command(CLI::App& app) {
    auto args = std::make_shared<SolveArgs>();
    auto* cmd = app.add_subcommand("solve", "Resolve conda packages against channels and print the answer");
    cmd->add_option("specs", args->specs, "Match specs, like python=3.11 \"numpy>=1.26\" \"pytorch 2.4.* cuda*\"")
        ->required();
    cmd->add_option("-c,--channel", args->channels,
                    "Channel, highest priority first (repeatable): a name, URL, file:// URL or local folder")
        ->required()
        ->allow_extra_args(false);  // one value per -c: `solve a -c chan b` keeps b a spec
    cmd->add_option("--platform", args->platform, "os/arch of the target (default: this machine's); picks the subdir");
    cmd->add_option("--channel-priority", args->channel_priority, "strict (default), flexible or disabled");
    cmd->add_option("--virtual-package", args->virtual_packages,
                    "__NAME=VERSION[=BUILD] (repeatable), e.g. __cuda=12.4; an empty VERSION removes one")
        ->allow_extra_args(false);
    cmd->add_option("--channel-alias", args->channel_alias, "Where bare channel names live (default https://conda.anaconda.org)");
    cmd->add_option("--mirror", args->mirrors, "FROM=TO: fetch URLs starting with FROM from TO first (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--store", args->store, "Blob store; its work folder caches repodata (default $OCIBUILD_STORE or ~/.local/share/ocibuild/store)");
    cmd->add_flag("--offline", args->offline, "Use cached repodata only, ask no server");
    cmd->add_flag("--json", args->json, "Print the answer as a JSON array of package records");
    return {cmd, [args] { return run_solve(*args); }};
}

}  // namespace ocibuild::cli
