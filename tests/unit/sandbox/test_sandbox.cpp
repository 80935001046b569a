// sandbox::run() end to end, on a busybox image built by hand. One conformance suite, run for
// every combination of
//   who:    this process (in-process run(), root in CI), an unprivileged user with subordinate ids
//           (full map through newuidmap), the same user without them (single mapping);
//   rootfs: an overlay of two lowerdirs (whiteout and opaque folder made with mknod and setxattr),
//           or a plain folder (the copy fallback).
// The unprivileged runs need root here (to create the user and switch to it); they are skipped
// with a message elsewhere, as is everything when /bin/busybox (busybox-static) is missing.
#include <sys/mount.h>

#include <cstdlib>
#include <functional>

#include "sandbox_helpers.hpp"

namespace sandbox_test {
namespace {

enum class Who { caller, user_full, user_single };
enum class Kind { overlay, plain };

std::string label(Who who, Kind kind) {
    std::string w = who == Who::caller ? "in-process" : who == Who::user_full ? "user+subids" : "user, single id";
    return w + (kind == Kind::overlay ? ", overlay" : ", plain rootfs");
}

const std::vector<std::string> applets{"sh",  "id",   "echo",  "touch", "rm",   "chown",    "cat", "sleep",
                                       "ls",  "wget", "nc",    "kill",  "head", "ifconfig", "wc",  "grep",
                                       "pwd", "hostname", "mkdir", "stat", "true", "false", "env"};

struct Options {
    std::vector<std::string> argv;
    std::vector<std::string> env{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    bool network = true;
    std::vector<sandbox::BindMount> binds;
    std::chrono::seconds timeout{0};
    int cancel_after_ms = -1;
    std::string user;
    std::string cwd = "/";
};

struct Outcome {
    std::optional<std::string> error_category;
    std::string error_message;
    int exit_code = -1;
    int signal = 0;
    bool timed_out = false;
    bool cancelled = false;
    std::string out, err;
    std::chrono::milliseconds elapsed{0};
};

std::map<std::string, std::string> parse_lines(const std::string& text) {
    std::map<std::string, std::string> kv;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto eq = line.find('=');
        if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return kv;
}

std::vector<sandbox::IdMapping> parse_maps(const std::string& text) {
    std::vector<sandbox::IdMapping> maps;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
        unsigned long a = 0, b = 0, c = 0;
        REQUIRE(std::sscanf(item.c_str(), "%lu:%lu:%lu", &a, &b, &c) == 3);
        maps.push_back({static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(c)});
    }
    return maps;
}

// The image, the run's folders, and how to run the sandbox on them.
class Image {
public:
    /// `forced`: run in process with these maps instead of the detected ones (root only).
    Image(Who who, Kind kind, std::optional<sandbox::IdMaps> forced = {}) : who_(who), kind_(kind) {
        char tmpl[] = "/tmp/ocibuild-sbx-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        base = tmpl;
        ::chmod(base.c_str(), 0755);
        if (who != Who::caller) {
            auto user = ensure_test_user();
            if (!user) {
                why_not = "needs root (to create and become the user " + std::string(test_user) + ")";
                return;
            }
            uid_ = user->first;
            gid_ = user->second;
            fs::copy_file(fs::read_symlink("/proc/self/exe").parent_path() / "sandbox_driver", base / "driver");
            ::chmod((base / "driver").c_str(), 0755);
            spit(base / "empty", "");
        }
        ids = forced ? *forced : detect_ids();
        if (who == Who::user_full && !ids.full()) {
            why_not = std::string(test_user) + " has no subordinate ids here (or newuidmap is missing)";
            return;
        }
        build_tree();
        if (who != Who::caller) chown_tree(base, uid_, gid_);
        if (forced) chown_tree(base, *forced->to_host_uid(0), *forced->to_host_gid(0));
        usable = true;
    }
    ~Image() { remove_tree(base); }
    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;

    /// The image's bottom layer (overlay) or the rootfs (plain).
    [[nodiscard]] fs::path bottom() const { return kind_ == Kind::overlay ? lowers.back() : rootfs; }
    /// The folder holding the result: the upperdir (overlay) or the rootfs itself (plain).
    [[nodiscard]] fs::path changes() const { return kind_ == Kind::overlay ? upper : rootfs; }
    [[nodiscard]] bool overlay() const { return kind_ == Kind::overlay; }
    [[nodiscard]] bool in_process() const { return who_ == Who::caller; }
    [[nodiscard]] bool single() const { return !ids.full(); }

    Outcome run(const Options& o) {
        auto start = std::chrono::steady_clock::now();
        Outcome r = in_process() ? run_here(o) : run_driver(o);
        r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        return r;
    }

    /// The driver (or, in process, a forked copy of this test calling run()) started in the
    /// background, for the SIGKILL test; its pid.
    pid_t start(const Options& o) {
        if (in_process()) {
            pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                try {
                    (void)sandbox::run(spec(o, -1, -1), ids);
                } catch (...) {
                }
                ::_exit(0);
            }
            return pid;
        }
        return spawn(driver_argv(o), base / "out", base / "err");
    }

    fs::path base, upper, work, rootfs;
    std::vector<fs::path> lowers;
    sandbox::IdMaps ids;
    bool usable = false;
    std::string why_not;

private:
    sandbox::IdMaps detect_ids() {
        if (in_process()) return sandbox::detect_id_maps();
        auto argv = as_user({(base / "driver").string(), "--print-maps"});
        if (who_ == Who::user_single)
            argv.insert(argv.end() - 1, {"--subuid-file", (base / "empty").string(), "--subgid-file",
                                         (base / "empty").string()});
        REQUIRE(wait_exit(spawn(argv, base / "maps", base / "maps.err")) == 0);
        auto kv = parse_lines(slurp(base / "maps"));
        return sandbox::IdMaps{parse_maps(kv["uids"]), parse_maps(kv["gids"])};
    }

    std::vector<std::string> as_user(std::vector<std::string> argv) const {
        std::vector<std::string> out{"/usr/bin/setpriv", "--reuid=" + std::to_string(uid_),
                                     "--regid=" + std::to_string(gid_), "--init-groups", "--"};
        out.insert(out.end(), argv.begin(), argv.end());
        return out;
    }

    // bin/ (busybox), etc/passwd and group, data/{keep,modify,delete,hidden}, dir/sub/file,
    // opq/old, opt/tools/greet. The overlay's top layer hides data/hidden with a whiteout and
    // makes opq/ opaque (with only opq/new); the plain rootfs is what the overlay shows.
    void build_tree() {
        fs::path bottom;
        if (overlay()) {
            lowers = {base / "l2", base / "l1"};
            upper = base / "upper";
            work = base / "work";
            for (const auto& d : {lowers[0], lowers[1], upper, work}) fs::create_directories(d);
            bottom = lowers[1];
        } else {
            rootfs = base / "rootfs";
            fs::create_directories(rootfs);
            bottom = rootfs;
        }
        for (const char* d : {"bin", "etc", "data", "dir/sub", "opq", "opt/tools"}) fs::create_directories(bottom / d);
        fs::copy_file(busybox, bottom / "bin/busybox");
        for (const auto& a : applets) fs::create_symlink("busybox", bottom / "bin" / a);
        spit(bottom / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1234:1234::/home/builder:/bin/sh\n");
        spit(bottom / "etc/group", "root:x:0:\nbuilder:x:1234:\nextra:x:2000:nobody,builder\n");
        spit(bottom / "data/keep", "keep\n");
        spit(bottom / "data/modify", "old\n");
        spit(bottom / "data/delete", "delete\n");
        spit(bottom / "dir/sub/file", "file\n");
        spit(bottom / "opt/tools/greet", "#!/bin/sh\necho greetings\n");
        ::chmod((bottom / "opt/tools/greet").c_str(), 0755);
        if (!overlay()) {
            spit(bottom / "opq/new", "new\n");
            return;
        }
        spit(bottom / "data/hidden", "hidden\n");
        spit(bottom / "opq/old", "old\n");
        const auto& top = lowers[0];
        fs::create_directories(top / "data");
        fs::create_directories(top / "opq");
        spit(top / "opq/new", "new\n");
        // The overlay forms the layer module's extraction produces: a 0/0 character device for a
        // whiteout, the opaque xattr of the flavour run() mounts with.
        REQUIRE(::mknod((top / "data/hidden").c_str(), S_IFCHR | 0, makedev(0, 0)) == 0);
        const char* opaque = sandbox::uses_user_namespace(ids) ? "user.overlay.opaque" : "trusted.overlay.opaque";
        REQUIRE(::setxattr((top / "opq").c_str(), opaque, "y", 1, 0) == 0);
    }

    sandbox::RunSpec spec(const Options& o, int out_fd, int err_fd) const {
        sandbox::RunSpec s;
        if (overlay()) {
            s.lowerdirs = lowers;
            s.upperdir = upper;
            s.workdir = work;
        } else {
            s.rootfs = rootfs;
        }
        s.argv = o.argv;
        s.env = o.env;
        s.network = o.network;
        s.binds = o.binds;
        s.timeout = o.timeout;
        s.user = o.user;
        s.cwd = o.cwd;
        if (out_fd >= 0) s.stdout_fd = out_fd;
        if (err_fd >= 0) s.stderr_fd = err_fd;
        return s;
    }

    Outcome run_here(const Options& o) {
        Outcome r;
        {
            core::UniqueFd out(::open((base / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            core::UniqueFd err(::open((base / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            std::atomic<bool> cancel{false};
            std::thread canceller;
            if (o.cancel_after_ms >= 0)
                canceller = std::thread([&] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(o.cancel_after_ms));
                    cancel = true;
                });
            try {
                auto res = sandbox::run(spec(o, out.get(), err.get()), ids, &cancel);
                r.exit_code = res.exit_code;
                r.signal = res.signal;
                r.timed_out = res.timed_out;
                r.cancelled = res.cancelled;
            } catch (const core::Error& e) {
                r.error_category = std::string(core::to_string(e.category()));
                r.error_message = e.what();
            }
            if (canceller.joinable()) canceller.join();
        }
        r.out = slurp(base / "out");
        r.err = slurp(base / "err");
        return r;
    }

    std::vector<std::string> driver_argv(const Options& o) const {
        std::vector<std::string> a{(base / "driver").string(), "--result", (base / "result").string()};
        if (who_ == Who::user_single)
            a.insert(a.end(), {"--subuid-file", (base / "empty").string(), "--subgid-file", (base / "empty").string()});
        if (overlay()) {
            for (const auto& l : lowers) a.insert(a.end(), {"--lower", l.string()});
            a.insert(a.end(), {"--upper", upper.string(), "--work", work.string()});
        } else {
            a.insert(a.end(), {"--rootfs", rootfs.string()});
        }
        for (const auto& e : o.env) a.insert(a.end(), {"--env", e});
        if (!o.network) a.push_back("--no-network");
        for (const auto& b : o.binds)
            a.insert(a.end(), {"--bind", b.source.string() + ":" + b.target + (b.read_only ? "" : ":rw")});
        if (o.timeout.count() > 0) a.insert(a.end(), {"--timeout", std::to_string(o.timeout.count())});
        if (o.cancel_after_ms >= 0) a.insert(a.end(), {"--cancel-after-ms", std::to_string(o.cancel_after_ms)});
        if (!o.user.empty()) a.insert(a.end(), {"--user", o.user});
        a.insert(a.end(), {"--cwd", o.cwd, "--"});
        a.insert(a.end(), o.argv.begin(), o.argv.end());
        return as_user(a);
    }

    Outcome run_driver(const Options& o) {
        fs::remove(base / "result");
        int rc = wait_exit(spawn(driver_argv(o), base / "out", base / "err"));
        Outcome r;
        r.out = slurp(base / "out");
        r.err = slurp(base / "err");
        auto kv = parse_lines(slurp(base / "result"));
        if (kv.count("error")) {
            r.error_category = kv["error"];
            r.error_message = kv["message"];
            CHECK(rc == 3);
            return r;
        }
        REQUIRE_MESSAGE(kv.count("exit"), "driver exit " << rc << ", stderr: " << r.err);
        r.exit_code = std::stoi(kv["exit"]);
        r.signal = std::stoi(kv["signal"]);
        r.timed_out = kv["timed_out"] == "1";
        r.cancelled = kv["cancelled"] == "1";
        return r;
    }

    Who who_;
    Kind kind_;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
};

// Runs `body` once per combination, each on a fresh image, after the common checks.
void for_each_mode(const std::function<void(Image&)>& body) {
    if (!have_busybox()) {
        MESSAGE("skipped: /bin/busybox (busybox-static) is not installed");
        return;
    }
    for (Who who : {Who::caller, Who::user_full, Who::user_single}) {
        for (Kind kind : {Kind::overlay, Kind::plain}) {
            INFO("mode: " << label(who, kind));
            Image image(who, kind);
            if (!image.usable) {
                MESSAGE("skipped " << label(who, kind) << ": " << image.why_not);
                continue;
            }
            auto mounts_before = sandbox_mounts(image.base);
            body(image);
            // Whatever the test did: no mount and no process of the sandbox is left.
            CHECK(sandbox_mounts(image.base) == mounts_before);
            CHECK(children_of_self().empty());
        }
    }
}

Options cmd(std::string script) { return Options{{"sh", "-c", std::move(script)}}; }

// A sleep duration no other test process uses (test binaries may run side by side), so that
// "sleep <n>" in the process list is ours.
std::string nap(int k) { return std::to_string(k * 10'000'000 + ::getpid()); }

struct stat lstat_of(const fs::path& p) {
    struct stat st {};
    REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, p.string());
    return st;
}

bool is_whiteout(const fs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

}  // namespace

TEST_CASE("sandbox: the command runs as root (0:0) in its own pid and uts namespaces") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("id -u; id -g; echo pid=$$; hostname"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.exit_code == 0);
        CHECK(r.out == "0\n0\npid=2\nocibuild\n");  // pid 1 is the sandbox's init
    });
}

TEST_CASE("sandbox: a step that only runs leaves no trace: mount points, /etc/hosts, resolv.conf stay out") {
    for_each_mode([](Image& img) {
        auto before = listing(img.changes());
        auto r = img.run(cmd("cat /etc/resolv.conf; echo ---; cat /etc/hosts; ls -d /proc/1 /dev/null /sys/kernel"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.exit_code == 0);
        CHECK(r.out == slurp("/etc/resolv.conf") + "---\n" + slurp("/etc/hosts") + "/dev/null\n/proc/1\n/sys/kernel\n");
        // Overlay: the upperdir is still empty. Plain: the tree is as it was, mtimes included.
        CHECK(listing(img.changes()) == before);
    });
}

TEST_CASE("sandbox: creating, modifying and deleting files, in lower layers too, lands in the upperdir") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("echo new > /data/new && echo more >> /data/modify && rm /data/delete && rm -r /dir && "
                             "ls /opq && ls /data && cat /data/modify"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        // The top layer's whiteout hides data/hidden, its opaque opq/ hides opq/old.
        CHECK(r.out == "new\nkeep\nmodify\nnew\nold\nmore\n");
        auto c = img.changes();
        CHECK(slurp(c / "data/new") == "new\n");
        CHECK(slurp(c / "data/modify") == "old\nmore\n");  // copied up whole
        if (img.overlay()) {
            CHECK(names(listing(c)) == std::set<std::string>{"data", "data/delete", "data/modify", "data/new", "dir"});
            CHECK(is_whiteout(c / "data/delete"));
            CHECK(is_whiteout(c / "dir"));
        } else {
            CHECK(!fs::exists(c / "data/delete"));
            CHECK(!fs::exists(c / "dir"));
            CHECK(fs::exists(c / "data/keep"));
        }
    });
}

TEST_CASE("sandbox: chown to another id works with subordinate ids and reaches the disk as the mapped id") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("echo x > /data/owned && chown 1000:1000 /data/owned && stat -c %u:%g /data/owned"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        if (img.single()) {
            CHECK(r.exit_code != 0);  // only root exists in the namespace
            CHECK(r.err.find("Invalid argument") != std::string::npos);
            return;
        }
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out == "1000:1000\n");
        auto st = lstat_of(img.changes() / "data/owned");
        CHECK(st.st_uid == *img.ids.to_host_uid(1000));
        CHECK(st.st_gid == *img.ids.to_host_gid(1000));
        CHECK(img.ids.to_sandbox_uid(st.st_uid) == 1000u);
    });
}

TEST_CASE("sandbox: the step's user, by name from the image's passwd or by number") {
    for_each_mode([](Image& img) {
        Options by_name = cmd("id -u; id -g; id -G; echo $HOME");
        by_name.user = "builder";
        auto r = img.run(by_name);
        if (img.single()) {
            REQUIRE(r.error_category);
            CHECK(*r.error_category == "unsupported");
            CHECK(r.error_message.find("only root is mapped") != std::string::npos);
            CHECK(r.error_message.find("/etc/subuid") != std::string::npos);
            return;
        }
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == "1234\n1234\n1234 2000\n/home/builder\n");

        Options numeric = cmd("id -u; id -g; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status");
        numeric.user = "1000:1001";
        r = img.run(numeric);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == "1000\n1001\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n");

        Options unknown = cmd("true");
        unknown.user = "nobody-here";
        r = img.run(unknown);
        REQUIRE(r.error_category);
        CHECK(*r.error_category == "invalid input");
        CHECK(r.error_message.find("user \"nobody-here\" not found in /etc/passwd") != std::string::npos);
    });
}

TEST_CASE("sandbox: root keeps podman's default capabilities only, with no_new_privs") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out ==
              "CapInh:\t00000000800405fb\nCapPrm:\t00000000800405fb\nCapEff:\t00000000800405fb\n"
              "CapBnd:\t00000000800405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n");
    });
}

TEST_CASE("sandbox: network shared by default, loopback only with network = false") {
    for_each_mode([](Image& img) {
        TcpSink sink;
        auto port = std::to_string(sink.port());
        auto shared = img.run(cmd("echo through | nc -w 2 127.0.0.1 " + port));
        REQUIRE_MESSAGE(!shared.error_category, shared.error_message);
        CHECK_MESSAGE(shared.exit_code == 0, shared.err);
        CHECK(eventually([&] { return sink.received() == "through\n"; }, 3000ms));

        Options isolated = cmd("ifconfig lo | grep -c UP; echo blocked | nc -w 2 127.0.0.1 " + port);
        isolated.network = false;
        auto r = img.run(isolated);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.exit_code != 0);
        CHECK(r.out == "1\n");  // lo is up in the new namespace
        CHECK(r.err.find("Connection refused") != std::string::npos);
        std::this_thread::sleep_for(100ms);
        CHECK(sink.connections() == 1);
        CHECK(sink.received() == "through\n");
    });
}

TEST_CASE("sandbox: exit codes and signals") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("exit 3"));
        CHECK(r.exit_code == 3);
        CHECK(r.signal == 0);
        r = img.run(cmd("kill -TERM $$"));
        CHECK(r.exit_code == 128 + SIGTERM);
        CHECK(r.signal == SIGTERM);
        CHECK(!r.timed_out);
        r = img.run(Options{{"false"}});
        CHECK(r.exit_code == 1);
    });
}

TEST_CASE("sandbox: a command that is not there exits 127 with a message; argv[0] is looked up in the step's PATH") {
    for_each_mode([](Image& img) {
        auto r = img.run(Options{{"no-such-command", "x"}});
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.exit_code == 127);
        CHECK(r.err == "ocibuild: no-such-command: command not found\n");

        r = img.run(Options{{"greet"}});  // not on the default PATH
        CHECK(r.exit_code == 127);
        Options on_path{{"greet"}, {"PATH=/opt/tools:/bin"}};
        r = img.run(on_path);
        CHECK(r.exit_code == 0);
        CHECK(r.out == "greetings\n");

        r = img.run(Options{{"/etc/passwd"}});
        CHECK(r.exit_code == 126);
        CHECK(r.err == "ocibuild: /etc/passwd: Permission denied\n");
    });
}

TEST_CASE("sandbox: env, and a missing cwd is created (a real change of the step)") {
    for_each_mode([](Image& img) {
        Options o{{"sh", "-c", "pwd; echo $FOO"}, {"PATH=/bin", "FOO=bar baz"}};
        o.cwd = "/work/a/b";
        auto r = img.run(o);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == "/work/a/b\nbar baz\n");
        CHECK(fs::is_directory(img.changes() / "work/a/b"));
    });
}

TEST_CASE("sandbox: /dev, /dev/shm and /proc") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd(
            "ls /dev; echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 3 /dev/urandom | wc -c && "
            "echo shm > /dev/shm/f && cat /dev/shm/f && grep ' /dev/shm ' /proc/mounts | grep -o size=65536k && "
            "! cat /proc/1/environ && touch /dev/extra && ls /dev/pts"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        // init is not the command's to inspect
        CHECK(r.err == "cat: can't open '/proc/1/environ': Permission denied\n");
        CHECK(r.out ==
              "core\nfd\nfull\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n"
              "5\n3\nshm\nsize=65536k\nptmx\n");
        // /dev and /proc are mounts; nothing written there reaches the image.
        CHECK(!fs::exists(img.changes() / "dev"));
        CHECK(!fs::exists(img.changes() / "proc"));
    });
}

TEST_CASE("sandbox: /proc/sys and friends are read-only, /proc/kcore and friends masked") {
    // This kernel's /proc may lack some of them (a VM without sysrq or kcore); check what it has.
    std::string script = "cat /proc/sys/kernel/core_pattern >/dev/null && echo readable; "
                         "echo x > /proc/sys/kernel/core_pattern";
    std::string out = "readable\n";
    std::string err = "sh: can't create /proc/sys/kernel/core_pattern: Read-only file system\n";
    if (fs::exists("/proc/sysrq-trigger")) {
        script += "; echo h > /proc/sysrq-trigger";
        err += "sh: can't create /proc/sysrq-trigger: Read-only file system\n";
    }
    for (const char* masked : {"/proc/kcore", "/proc/keys", "/proc/timer_list"}) {
        if (!fs::exists(masked)) continue;
        script += std::string("; wc -c < ") + masked;
        out += "0\n";
    }
    for_each_mode([&](Image& img) {
        auto r = img.run(cmd(script));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == out);
        CHECK(r.err == err);
    });
}

TEST_CASE("sandbox: /sys is read-only") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("ls -d /sys/kernel && touch /sys/x"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.exit_code != 0);
        CHECK(r.err.find("Read-only file system") != std::string::npos);
    });
}

TEST_CASE("sandbox: a cache mount is writable, survives on the host, and never reaches the layer") {
    for_each_mode([](Image& img) {
        auto cache = img.base / "cache";
        auto recipe = img.base / "recipe.txt";
        fs::create_directories(cache);
        spit(recipe, "from the recipe\n");
        if (!img.in_process()) {
            auto st = lstat_of(img.base);
            ::chown(cache.c_str(), st.st_uid, st.st_gid);
            ::chown(recipe.c_str(), st.st_uid, st.st_gid);
        }
        auto before = listing(img.changes());
        Options o = cmd(
            "cat /recipe/file.txt && echo $(cat /var/cache/pkgs/count 2>/dev/null)x > /var/cache/pkgs/count && "
            "cat /var/cache/pkgs/count && ! echo no > /recipe/file.txt");
        o.binds = {{cache, "/var/cache/pkgs", false}, {recipe, "/recipe/file.txt", true}};
        auto r = img.run(o);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out == "from the recipe\nx\n");
        CHECK(r.err.find("Read-only file system") != std::string::npos);
        r = img.run(o);  // the next build sees the cache
        CHECK(r.out == "from the recipe\nxx\n");
        CHECK(slurp(cache / "count") == "xx\n");
        CHECK(slurp(recipe) == "from the recipe\n");
        // Neither the mount points (var/, recipe/ were missing in the image) nor the contents.
        CHECK(listing(img.changes()) == before);
    });
}

TEST_CASE("sandbox: a timeout kills the step quickly, and nothing of it is left") {
    for_each_mode([](Image& img) {
        Options o{{"sh", "-c", "sleep " + nap(1) + " & sleep " + nap(2)}};
        o.timeout = std::chrono::seconds(1);
        auto r = img.run(o);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.timed_out);
        CHECK(!r.cancelled);
        CHECK(r.exit_code == 137);
        CHECK(r.signal == SIGKILL);
        CHECK(r.elapsed < 4000ms);  // 1 s, plus slack for a loaded machine
        // run() returns once the pid namespace is gone: no waiting needed.
        CHECK(processes_running({"sleep", nap(1)}).empty());
        CHECK(processes_running({"sleep", nap(2)}).empty());
    });
}

TEST_CASE("sandbox: cancellation kills the step") {
    for_each_mode([](Image& img) {
        Options o{{"sleep", nap(3)}};
        o.cancel_after_ms = 300;
        auto r = img.run(o);
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.cancelled);
        CHECK(!r.timed_out);
        CHECK(r.exit_code == 137);
        CHECK(r.elapsed < 3000ms);
        CHECK(processes_running({"sleep", nap(3)}).empty());
    });
}

TEST_CASE("sandbox: background processes die with the step") {
    for_each_mode([](Image& img) {
        auto r = img.run(cmd("sleep " + nap(4) + " >/dev/null 2>&1 & echo started"));
        CHECK(r.exit_code == 0);
        CHECK(r.out == "started\n");
        CHECK(processes_running({"sleep", nap(4)}).empty());
    });
}

TEST_CASE("sandbox: SIGKILL of the process running a step leaves no process and no mount; the next run works") {
    for_each_mode([](Image& img) {
        auto mounts_before = sandbox_mounts(img.base);
        pid_t pid = img.start(Options{{"sleep", nap(5)}});
        REQUIRE(eventually([] { return !processes_running({"sleep", nap(5)}).empty(); }, 5000ms));
        REQUIRE(::kill(pid, SIGKILL) == 0);
        CHECK(wait_exit(pid) == 128 + SIGKILL);
        CHECK(eventually([] { return processes_running({"sleep", nap(5)}).empty(); }, 1000ms));
        // Nor the sandbox's own processes (the driver's forks keep its command line).
        if (!img.in_process())
            CHECK(eventually([&] { return processes_of((img.base / "driver").string()).empty(); }, 1000ms));
        CHECK(sandbox_mounts(img.base) == mounts_before);
        auto r = img.run(cmd("echo again"));  // same upperdir and workdir
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == "again\n");
    });
}

TEST_CASE("sandbox: an image whose /etc/resolv.conf dangles keeps it") {
    for_each_mode([](Image& img) {
        fs::create_symlink("../run/systemd/resolve/stub-resolv.conf", img.bottom() / "etc/resolv.conf");
        if (!img.in_process()) {
            auto st = lstat_of(img.base);
            ::lchown((img.bottom() / "etc/resolv.conf").c_str(), st.st_uid, st.st_gid);
        }
        auto before = listing(img.changes());
        auto r = img.run(cmd("cat /etc/resolv.conf; cat /etc/hosts >/dev/null && echo hosts"));
        REQUIRE_MESSAGE(!r.error_category, r.error_message);
        CHECK(r.out == "hosts\n");
        CHECK(r.err == "cat: can't open '/etc/resolv.conf': No such file or directory\n");
        CHECK(listing(img.changes()) == before);
    });
}

TEST_CASE("sandbox: root with another map gets a user namespace and user.overlay xattrs") {
    if (!have_busybox() || ::geteuid() != 0) return;
    sandbox::IdMaps ids{{{0, 200000, 65536}}, {{0, 300000, 65536}}};
    REQUIRE(sandbox::uses_user_namespace(ids));
    Image img(Who::caller, Kind::overlay, ids);
    auto r = img.run(cmd("cat /proc/self/uid_map /proc/self/gid_map; ls /opq; cat /data/hidden; "
                         "echo x > /data/new; chown 1000:1000 /data/new; rm /data/keep"));
    REQUIRE_MESSAGE(!r.error_category, r.error_message);
    CHECK(r.out == "         0     200000      65536\n         0     300000      65536\nnew\n");
    CHECK(r.err == "cat: can't open '/data/hidden': No such file or directory\n");
    auto st = lstat_of(img.upper / "data/new");
    CHECK(st.st_uid == 201000);
    CHECK(st.st_gid == 301000);
    CHECK(is_whiteout(img.upper / "data/keep"));
}

TEST_CASE("sandbox: setup errors are exceptions with a clear message") {
    if (!have_busybox()) return;
    Image img(Who::caller, Kind::overlay);
    auto r = img.run(Options{{}});
    REQUIRE(r.error_category);
    CHECK(*r.error_category == "invalid input");
    CHECK(r.error_message == "the step has no command");

    Options bad = cmd("true");
    bad.binds = {{img.base, "/proc/x", true}};
    r = img.run(bad);
    CHECK(r.error_message == "bind target \"/proc/x\" is under /proc, which the sandbox mounts itself");

    img.lowers.push_back(img.base / "missing");
    r = img.run(cmd("true"));
    REQUIRE(r.error_category);
    CHECK(*r.error_category == "not found");
    CHECK(r.error_message == "lowerdir " + (img.base / "missing").string() + ": No such file or directory");
}

TEST_CASE("sandbox: user namespaces disabled, and an overlay that cannot mount, are clear errors") {
    if (!have_busybox() || ::geteuid() != 0 || ::access("/usr/bin/unshare", X_OK) != 0) return;
    Image img(Who::caller, Kind::plain);
    auto driver = fs::read_symlink("/proc/self/exe").parent_path() / "sandbox_driver";
    // max_user_namespaces is per user namespace: 0 in a throwaway one disables them below it only.
    auto script = "echo 0 > /proc/sys/user/max_user_namespaces && exec " + driver.string() + " --maps 0:0:1 --rootfs " +
                  img.rootfs.string() + " -- true";
    auto pid = spawn({"/usr/bin/unshare", "--user", "--map-root-user", "--", "/bin/sh", "-c", script}, img.base / "out",
                     img.base / "err");
    CHECK(wait_exit(pid) == 3);
    auto kv = parse_lines(slurp(img.base / "err"));
    CHECK(kv["error"] == "unsupported");
    CHECK(kv["message"] ==
          "cannot create a user namespace (are unprivileged user namespaces disabled? see "
          "/proc/sys/user/max_user_namespaces, kernel.unprivileged_userns_clone, AppArmor's "
          "restrict_unprivileged_userns): No space left on device");

    // An upperdir and a workdir on different filesystems: overlay refuses to mount.
    Image ovl(Who::caller, Kind::overlay);
    char tmpl[] = "/dev/shm/ocibuild-sbx-work-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    ovl.work = tmpl;
    auto r = ovl.run(cmd("true"));
    remove_tree(tmpl);
    if (slurp("/proc/self/mountinfo").find(" /dev/shm ") == std::string::npos) return;  // same filesystem here
    REQUIRE(r.error_category);
    CHECK(*r.error_category == "unsupported");
    CHECK(r.error_message.rfind("overlay unavailable: mounting the root filesystem (2 layers, trusted.overlay xattrs) "
                                "failed: ", 0) == 0);
    CHECK(r.error_message.find("; ocibuild falls back to copying") != std::string::npos);
}

TEST_CASE("sandbox: overlay_available() and the xattr flavour") {
    CHECK(sandbox::overlay_available("/tmp"));
    CHECK(sandbox::uses_user_namespace(sandbox::detect_id_maps()) == (::geteuid() != 0));
    auto user = ensure_test_user();
    if (!user) return;
    Image img(Who::user_full, Kind::plain);
    auto out = img.base / "probe";
    auto pid = spawn({"/usr/bin/setpriv", "--reuid=" + std::to_string(user->first),
                      "--regid=" + std::to_string(user->second), "--init-groups", "--", (img.base / "driver").string(),
                      "--probe-overlay", img.base.string()},
                     out, img.base / "probe.err");
    CHECK(wait_exit(pid) == 0);
    CHECK(slurp(out) == "overlay=1\n");
}

}  // namespace sandbox_test
