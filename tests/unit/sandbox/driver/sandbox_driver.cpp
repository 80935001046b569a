// sandbox_driver: a thin command line over sandbox::run(), for the sandbox's unit tests only. It
// lets them run the sandbox as another (unprivileged) user through setpriv, and SIGKILL it in the
// middle of a step. Not installed.
//
//   sandbox_driver [options] -- COMMAND...
//     --lower DIR (repeatable, top-most first) --upper DIR --work DIR | --rootfs DIR
//     --no-network  --bind SRC:DST[:rw]  --timeout SECONDS  --cancel-after-ms N
//     --user SPEC  --cwd DIR  --env K=V (repeatable)  --hostname NAME
//     --subuid-file F --subgid-file F   (given to detect_id_maps)
//     --maps I:O:C    use this single range for uids and gids instead of detect_id_maps()
//     --result FILE   writes "exit=", "signal=", "timed_out=", "cancelled=" lines, or
//                     "error=<category>" and "message=" when run() throws
//     --print-maps    prints "uids=inside:outside:count,..." "gids=..." "full=" "userns=" and exits
//     --probe-overlay DIR   prints "overlay=0|1" for overlay_available(DIR) and exits
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "ocibuild/core/error.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

using namespace ocibuild;

namespace {

std::string render(const std::vector<sandbox::IdMapping>& maps) {
    std::string s;
    for (const auto& m : maps)
        s += (s.empty() ? "" : ",") + std::to_string(m.inside) + ":" + std::to_string(m.outside) + ":" +
             std::to_string(m.count);
    return s;
}

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "sandbox_driver: %s\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    sandbox::RunSpec spec;
    std::string subuid = "/etc/subuid", subgid = "/etc/subgid", result_file, probe_dir;
    bool print_maps = false;
    std::optional<sandbox::IdMapping> forced;
    long cancel_after_ms = -1;
    int i = 1;
    auto value = [&](const char* flag) -> std::string {
        if (i + 1 >= argc) usage((std::string(flag) + " needs a value").c_str());
        return argv[++i];
    };
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a == "--lower") spec.lowerdirs.push_back(value("--lower"));
        else if (a == "--upper") spec.upperdir = value("--upper");
        else if (a == "--work") spec.workdir = value("--work");
        else if (a == "--rootfs") spec.rootfs = value("--rootfs");
        else if (a == "--no-network") spec.network = false;
        else if (a == "--bind") {
            auto v = value("--bind");
            auto c1 = v.find(':');
            auto c2 = v.find(':', c1 + 1);
            if (c1 == std::string::npos) usage("--bind SRC:DST[:rw]");
            sandbox::BindMount b;
            b.source = v.substr(0, c1);
            b.target = v.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
            b.read_only = !(c2 != std::string::npos && v.substr(c2 + 1) == "rw");
            spec.binds.push_back(b);
        } else if (a == "--timeout") spec.timeout = std::chrono::seconds(std::stol(value("--timeout")));
        else if (a == "--cancel-after-ms") cancel_after_ms = std::stol(value("--cancel-after-ms"));
        else if (a == "--user") spec.user = value("--user");
        else if (a == "--cwd") spec.cwd = value("--cwd");
        else if (a == "--env") spec.env.push_back(value("--env"));
        else if (a == "--hostname") spec.hostname = value("--hostname");
        else if (a == "--subuid-file") subuid = value("--subuid-file");
        else if (a == "--subgid-file") subgid = value("--subgid-file");
        else if (a == "--result") result_file = value("--result");
        else if (a == "--print-maps") print_maps = true;
        else if (a == "--maps") {
            unsigned long in = 0, out = 0, count = 0;
            if (std::sscanf(value("--maps").c_str(), "%lu:%lu:%lu", &in, &out, &count) != 3) usage("--maps I:O:C");
            forced = sandbox::IdMapping{static_cast<std::uint32_t>(in), static_cast<std::uint32_t>(out),
                                        static_cast<std::uint32_t>(count)};
        }
        else if (a == "--probe-overlay") probe_dir = value("--probe-overlay");
        else usage(("unknown option " + a).c_str());
    }
    for (; i < argc; ++i) spec.argv.push_back(argv[i]);

    auto ids = forced ? sandbox::IdMaps{{*forced}, {*forced}} : sandbox::detect_id_maps(subuid, subgid);
    if (print_maps) {
        std::printf("uids=%s\ngids=%s\nfull=%d\nuserns=%d\n", render(ids.uids).c_str(), render(ids.gids).c_str(),
                    ids.full() ? 1 : 0, sandbox::uses_user_namespace(ids) ? 1 : 0);
        return 0;
    }
    if (!probe_dir.empty()) {
        std::printf("overlay=%d\n", sandbox::overlay_available(probe_dir) ? 1 : 0);
        return 0;
    }

    std::atomic<bool> cancel{false};
    std::thread canceller;
    if (cancel_after_ms >= 0)
        canceller = std::thread([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(cancel_after_ms));
            cancel = true;
        });
    std::string out;
    int rc = 0;
    try {
        auto r = sandbox::run(spec, ids, &cancel);
        out = "exit=" + std::to_string(r.exit_code) + "\nsignal=" + std::to_string(r.signal) +
              "\ntimed_out=" + std::to_string(r.timed_out) + "\ncancelled=" + std::to_string(r.cancelled) + "\n";
    } catch (const core::Error& e) {
        out = "error=" + std::string(core::to_string(e.category())) + "\nmessage=" + e.what() + "\n";
        rc = 3;
    }
    if (canceller.joinable()) {
        cancel = true;
        canceller.join();
    }
    if (!result_file.empty()) std::ofstream(result_file) << out;
    else std::fputs(out.c_str(), stderr);
    return rc;
}
