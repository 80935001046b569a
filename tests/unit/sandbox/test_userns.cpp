// run_in_user_namespace(): work as root of a user namespace with a given map, results and errors
// carried back. Run as root, with a map of 0 → 200000 (what subordinate ids give a user).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "ocibuild/core/error.hpp"
#include "ocibuild/core/fd.hpp"
#include "ocibuild/core/temp_dir.hpp"
#include "ocibuild/sandbox/sandbox.hpp"

using namespace ocibuild;
namespace fs = std::filesystem;

namespace {
const sandbox::IdMaps shifted{{{0, 200000, 65536}}, {{0, 300000, 65536}}};
}

TEST_CASE("run_in_user_namespace: root there, files chowned to mapped ids, the result comes back") {
    if (::geteuid() != 0) return;
    core::TempDir tmp;
    // Root in the namespace is host 200000 (a user's own uid, with subordinate ids): it writes
    // in folders it owns.
    REQUIRE(::chown(tmp.path().c_str(), 200000, 300000) == 0);
    const fs::path file = tmp.path() / "owned";
    const pid_t self = ::getpid();
    std::string got = sandbox::run_in_user_namespace(shifted, [&] {
        std::ifstream in("/proc/self/uid_map");
        std::string maps((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(file) << "x";
        if (!fs::exists(file)) throw core::Error(core::ErrorCategory::unauthorized, "cannot create " + file.string());
        if (::chown(file.c_str(), 1000, 1001) != 0) core::throw_errno("chown " + file.string());
        return std::to_string(::geteuid()) + ":" + std::to_string(::getegid()) + " " +
               std::to_string(::getpid() != self) + " " + maps;
    });
    CHECK(got == "0:0 1          0     200000      65536\n");
    struct stat st {};
    REQUIRE(::lstat(file.c_str(), &st) == 0);
    CHECK(st.st_uid == 201000);
    CHECK(st.st_gid == 301001);

    // A large result is carried whole (more than a socket buffer).
    std::string big = sandbox::run_in_user_namespace(shifted, [] { return std::string(8u << 20, 'b'); });
    CHECK(big == std::string(8u << 20, 'b'));
}

TEST_CASE("run_in_user_namespace: errors keep their category and message; a dying child is an error") {
    if (::geteuid() != 0) return;
    try {
        (void)sandbox::run_in_user_namespace(shifted, []() -> std::string {
            throw core::Error(core::ErrorCategory::not_found, "layer sha256:ab: no such blob");
        });
        FAIL("no error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::not_found);
        CHECK(std::string(e.what()) == "layer sha256:ab: no such blob");
    }
    try {
        (void)sandbox::run_in_user_namespace(shifted, []() -> std::string { throw std::runtime_error("boom"); });
        FAIL("no error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::internal);
        CHECK(std::string(e.what()) == "boom");
    }
    try {
        (void)sandbox::run_in_user_namespace(shifted, []() -> std::string {
            ::raise(SIGKILL);
            return "unreachable";
        });
        FAIL("no error");
    } catch (const core::Error& e) {
        CHECK(e.category() == core::ErrorCategory::internal);
        CHECK(std::string(e.what()).find("killed by signal 9") != std::string::npos);
    }
}

TEST_CASE("run_in_user_namespace: with the identity map (root) the work runs in this process") {
    if (::geteuid() != 0) return;
    const auto ids = sandbox::detect_id_maps();
    int touched = 0;
    CHECK(sandbox::run_in_user_namespace(ids, [&] {
              ++touched;
              return std::string("here");
          }) == "here");
    CHECK(touched == 1);
}
