// RunSpec → Plan: the checks and decisions made before fork.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "../../../src/sandbox/plan.hpp"
#include "ocibuild/core/error.hpp"
#include "ocibuild/core/temp_dir.hpp"

using namespace ocibuild;
namespace fs = std::filesystem;

namespace {

sandbox::IdMaps root_ids() { return {{{0, 0, 4294967295u}}, {{0, 0, 4294967295u}}}; }

std::string error_of(const sandbox::RunSpec& spec) {
    try {
        (void)sandbox::make_plan(spec, root_ids());
    } catch (const core::Error& e) {
        return std::string(core::to_string(e.category())) + ": " + e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("exec candidates: argv[0] with a slash as is, else each PATH folder") {
    CHECK(sandbox::exec_candidates("/bin/sh", {}) == std::vector<std::string>{"/bin/sh"});
    CHECK(sandbox::exec_candidates("./run.sh", {"PATH=/x"}) == std::vector<std::string>{"./run.sh"});
    CHECK(sandbox::exec_candidates("apt", {"A=1", "PATH=/usr/bin:/bin"}) ==
          std::vector<std::string>{"/usr/bin/apt", "/bin/apt"});
    CHECK(sandbox::exec_candidates("apt", {"PATH=/a::/b:"}) ==
          std::vector<std::string>{"/a/apt", "./apt", "/b/apt", "./apt"});
    CHECK(sandbox::exec_candidates("ls", {}).front() == "/usr/local/sbin/ls");  // the OCI default PATH
    CHECK(sandbox::exec_candidates("ls", {}).size() == 6);
}

TEST_CASE("overlay options: layers in order, the xattr flavour, no redirects or metacopy") {
    CHECK(sandbox::overlay_options({"/a", "/b"}, "/u", "/w", false) ==
          "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off,metacopy=off,volatile,redirect_dir=off");
    CHECK(sandbox::overlay_options({"/a"}, "/u", "/w", true) ==
          "lowerdir=/a,upperdir=/u,workdir=/w,index=off,metacopy=off,volatile,userxattr");
}

TEST_CASE("plan: mount points and binds, paths made relative to the root") {
    core::TempDir tmp;
    fs::create_directories(tmp.path() / "root");
    fs::create_directories(tmp.path() / "cache");
    sandbox::RunSpec spec;
    spec.rootfs = tmp.path() / "root";
    spec.argv = {"true"};
    spec.cwd = "/work//dir/./x/";
    spec.binds = {{tmp.path() / "cache", "//var/cache/./apt/", false}};
    auto plan = sandbox::make_plan(spec, root_ids());
    CHECK(!plan.overlay);
    CHECK(plan.cwd == "/work/dir/x");
    CHECK(plan.mount_points.front().path == "proc");
    CHECK(plan.mount_points.back().path == "var/cache/apt");
    CHECK(plan.mount_points.back().directory);
    CHECK(plan.binds.back().target == "var/cache/apt");
    CHECK(!plan.binds.back().read_only);
    // Root's identity map: no user namespace, trusted xattrs (anyone else: a namespace).
    CHECK((plan.id_writer == sandbox::idmap::Writer::none) == (::geteuid() == 0));
    CHECK(plan.userxattr == (::geteuid() != 0));
    CHECK(!plan.new_netns);
    spec.network = false;
    CHECK(sandbox::make_plan(spec, root_ids()).new_netns);
}

TEST_CASE("plan: what it refuses") {
    core::TempDir tmp;
    fs::create_directories(tmp.path() / "root");
    sandbox::RunSpec spec;
    spec.rootfs = tmp.path() / "root";
    CHECK(error_of(spec) == "invalid input: the step has no command");
    spec.argv = {"true"};
    spec.cwd = "relative";
    CHECK(error_of(spec) == "invalid input: cwd \"relative\" is not an absolute path");
    spec.cwd = "/";
    spec.binds = {{tmp.path(), "/a/../b", true}};
    CHECK(error_of(spec) == "invalid input: bind target \"/a/../b\" contains \"..\"");
    spec.binds = {{tmp.path(), "/dev/fuse", true}};
    CHECK(error_of(spec) == "invalid input: bind target \"/dev/fuse\" is under /dev, which the sandbox mounts itself");
    spec.binds = {{tmp.path(), "/", true}};
    CHECK(error_of(spec) == "invalid input: bind target \"/\" would hide the root filesystem");
    spec.binds = {{tmp.path() / "nope", "/x", true}};
    CHECK(error_of(spec) == "not found: bind source " + (tmp.path() / "nope").string() + ": No such file or directory");
    spec.binds = {};
    spec.rootfs = tmp.path() / "missing";
    CHECK(error_of(spec) == "not found: rootfs " + (tmp.path() / "missing").string() + ": No such file or directory");
    spec.lowerdirs = {tmp.path() / "root"};
    CHECK(error_of(spec) == "invalid input: upperdir is not set");
}
