// Every recipe mistake, asserted as the whole message a user sees.
#include <doctest/doctest.h>

#include "recipe_helpers.hpp"

using ocibuild::recipe::test::Context;
using ocibuild::recipe::test::with_base;

TEST_SUITE("recipe errors") {

TEST_CASE("unknown top-level key, with a suggestion") {
    Context c;
    CHECK(c.errors("bse = 1\n[base]\nref = \"scratch\"\n") ==
          "recipes/x.toml:1:1: unknown key \"bse\" in the top level; did you mean \"base\"?\n"
          "  bse = 1\n"
          "  ^");
}

TEST_CASE("unknown table header points at its name") {
    Context c;
    CHECK(c.errors(with_base("[confg]\nuser = \"x\"\n")) ==
          "recipes/x.toml:3:2: unknown key \"confg\" in the top level; did you mean \"config\"?\n"
          "  [confg]\n"
          "   ^");
}

TEST_CASE("unknown keys in [image], with and without a suggestion") {
    Context c;
    CHECK(c.errors(with_base("[image]\n  tgas = [\"a\"]\nfoo = 1\n")) ==
          "recipes/x.toml:4:3: unknown key \"tgas\" in [image]; did you mean \"tags\"?\n"
          "    tgas = [\"a\"]\n"
          "    ^\n"
          "recipes/x.toml:5:1: unknown key \"foo\" in [image]\n"
          "  foo = 1\n"
          "  ^");
}

TEST_CASE("a prefix is a close enough match") {
    Context c;
    CHECK(c.errors(with_base("[config]\nentry = [\"/bin/app\"]\n")) ==
          "recipes/x.toml:4:1: unknown key \"entry\" in [config]; did you mean \"entrypoint\"?\n"
          "  entry = [\"/bin/app\"]\n"
          "  ^");
}

TEST_CASE("unknown key in a step suggests only keys valid for its kind") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\n[[step]]\nrun = \"make\"\nshel = [\"/bin/bash\", \"-c\"]\n")) ==
          "recipes/x.toml:7:1: unknown key \"shel\" in [[step]] #2; did you mean \"shell\"?\n"
          "  shel = [\"/bin/bash\", \"-c\"]\n"
          "  ^");
    c.file("a");
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"a\", to = \"/a\" }\nrn = 1\n")) ==
          "recipes/x.toml:5:1: unknown key \"rn\" in [[step]] #1\n"
          "  rn = 1\n"
          "  ^");
}

TEST_CASE("unknown key inside copy, inline") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\ncopy = { form = \"a\", to = \"/a\" }\n")) ==
          "recipes/x.toml:4:8: [[step]] #1.copy needs \"from\"\n"
          "  copy = { form = \"a\", to = \"/a\" }\n"
          "         ^\n"
          "recipes/x.toml:4:10: unknown key \"form\" in [[step]] #1.copy; did you mean \"from\"?\n"
          "  copy = { form = \"a\", to = \"/a\" }\n"
          "           ^");
}

TEST_CASE("a top-level key below a table header gets a hint") {
    Context c;
    CHECK(c.errors("[base]\nref = \"scratch\"\nstep = []\n") ==
          "recipes/x.toml:3:1: unknown key \"step\" in [base] (a key below a [table] header belongs to that table: "
          "move it above the first header)\n"
          "  step = []\n"
          "  ^");
}

TEST_CASE("run options in a copy step") {
    Context c;
    c.file("a");
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"a\", to = \"/a\" }\nworkdir = \"/x\"\n")) ==
          "recipes/x.toml:5:1: \"workdir\" in [[step]] #1 only applies to run steps\n"
          "  workdir = \"/x\"\n"
          "  ^");
}

TEST_CASE("wrong types") {
    Context c;
    CHECK(c.errors(with_base("[image]\ntags = \"v1\"\n")) ==
          "recipes/x.toml:4:8: \"tags\" in [image] must be an array of strings, not a string\n"
          "  tags = \"v1\"\n"
          "         ^");
    CHECK(c.errors(with_base("[image]\ntags = [\"v1\", 2]\n")) ==
          "recipes/x.toml:4:15: item 2 of \"tags\" in [image] must be a string, not an integer\n"
          "  tags = [\"v1\", 2]\n"
          "                ^");
    CHECK(c.errors("image = \"x\"\n[base]\nref = \"scratch\"\n") ==
          "recipes/x.toml:1:9: \"image\" in the top level must be a table, not a string\n"
          "  image = \"x\"\n"
          "          ^");
    CHECK(c.errors(with_base("[step]\nrun = \"x\"\n")) ==
          "recipes/x.toml:3:1: \"step\" in the top level must be an array of tables ([[step]]), not a table\n"
          "  [step]\n"
          "  ^");
    CHECK(c.errors("step = [1]\n[base]\nref = \"scratch\"\n") ==
          "recipes/x.toml:1:9: item 1 of \"step\" in the top level must be a table, not an integer\n"
          "  step = [1]\n"
          "          ^");
    CHECK(c.errors(with_base("[[step]]\nrun = 5\n")) ==
          "recipes/x.toml:4:7: \"run\" in [[step]] #1 must be a string or an array of strings, not an integer\n"
          "  run = 5\n"
          "        ^");
    CHECK(c.errors(with_base("[config]\nauthor = 1979-05-27\nuser = true\nports = [8.5]\n")) ==
          "recipes/x.toml:4:10: \"author\" in [config] must be a string, not a date/time\n"
          "  author = 1979-05-27\n"
          "           ^\n"
          "recipes/x.toml:5:8: \"user\" in [config] must be a string, not a boolean\n"
          "  user = true\n"
          "         ^\n"
          "recipes/x.toml:6:10: item 1 of \"ports\" in [config] must be a string or an integer, not a float\n"
          "  ports = [8.5]\n"
          "           ^");
    CHECK(c.errors(with_base("[config]\nenv = { PATH = 1 }\nlabels = [\"a\"]\n")) ==
          "recipes/x.toml:4:16: \"PATH\" in [config].env must be a string, not an integer\n"
          "  env = { PATH = 1 }\n"
          "                 ^\n"
          "recipes/x.toml:5:10: \"labels\" in [config] must be a table, not an array\n"
          "  labels = [\"a\"]\n"
          "           ^");
}

TEST_CASE("entrypoint and cmd must be arrays") {
    Context c;
    CHECK(c.errors(with_base("[config]\ncmd = \"python train.py\"\n")) ==
          "recipes/x.toml:4:7: \"cmd\" in [config] must be an array of strings, not a string; for a shell command "
          "write [\"/bin/sh\", \"-c\", \"python train.py\"]\n"
          "  cmd = \"python train.py\"\n"
          "        ^");
    CHECK(c.errors(with_base("[config]\nentrypoint = 3\n")) ==
          "recipes/x.toml:4:14: \"entrypoint\" in [config] must be an array of strings, not an integer\n"
          "  entrypoint = 3\n"
          "               ^");
}

TEST_CASE("missing [base]") {
    Context c;
    CHECK(c.errors("") ==
          "recipes/x.toml:1:1: missing [base] table (use ref = \"scratch\" for an empty base)");
    CHECK(c.errors("[image]\nname = \"example.com/app\"\n") ==
          "recipes/x.toml:1:1: missing [base] table (use ref = \"scratch\" for an empty base)\n"
          "  [image]\n"
          "  ^");
}

TEST_CASE("[base] without ref") {
    Context c;
    CHECK(c.errors("[image]\n\n[base]\nrf = \"scratch\"\n") ==
          "recipes/x.toml:3:1: [base] needs \"ref\"\n"
          "  [base]\n"
          "  ^\n"
          "recipes/x.toml:4:1: unknown key \"rf\" in [base]; did you mean \"ref\"?\n"
          "  rf = \"scratch\"\n"
          "  ^");
}

TEST_CASE("missing files") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"hello/\", to = \"/app\" }\n")) ==
          "recipes/x.toml:4:17: missing file: \"hello/\" (looked for " + c.abs("hello") + ")\n"
          "  copy = { from = \"hello/\", to = \"/app\" }\n"
          "                  ^");
    CHECK(c.errors("[base]\nref = \"oci:layout:v1\"\n") ==
          "recipes/x.toml:2:7: missing file: \"layout\" (looked for " + c.abs("layout") + ")\n"
          "  ref = \"oci:layout:v1\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"oci-archive:sub/../base.tar\"\n") ==
          "recipes/x.toml:2:7: missing file: \"sub/../base.tar\" (looked for " + c.abs("base.tar") + ")\n"
          "  ref = \"oci-archive:sub/../base.tar\"\n"
          "        ^");
}

TEST_CASE("oci layout vs archive mix-ups") {
    Context c;
    c.file("base.tar");
    c.directory("layout");
    CHECK(c.errors("[base]\nref = \"oci:base.tar:v1\"\n") ==
          "recipes/x.toml:2:7: bad base \"oci:base.tar:v1\": \"base.tar\" is not a directory; use "
          "\"oci-archive:base.tar:v1\" for an archive\n"
          "  ref = \"oci:base.tar:v1\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"oci-archive:layout\"\n") ==
          "recipes/x.toml:2:7: bad base \"oci-archive:layout\": \"layout\" is a directory; use \"oci:layout\" for an "
          "OCI layout\n"
          "  ref = \"oci-archive:layout\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"oci:\"\n") ==
          "recipes/x.toml:2:7: bad base \"oci:\": expected oci:DIR[:TAG], a directory holding an OCI layout\n"
          "  ref = \"oci:\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"oci:layout:\"\n") ==
          "recipes/x.toml:2:7: bad base \"oci:layout:\": empty tag after \":\"\n"
          "  ref = \"oci:layout:\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"docker-archive:base.tar\"\n") ==
          "recipes/x.toml:2:7: bad base \"docker-archive:base.tar\": \"docker-archive:\" is not supported; use "
          "\"scratch\", \"oci:DIR[:TAG]\", \"oci-archive:FILE[:TAG]\" or a registry reference\n"
          "  ref = \"docker-archive:base.tar\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"docker://ubuntu\"\n") ==
          "recipes/x.toml:2:7: bad base \"docker://ubuntu\": write the registry reference without \"docker://\"\n"
          "  ref = \"docker://ubuntu\"\n"
          "        ^");
}

TEST_CASE("bad references") {
    Context c;
    CHECK(c.errors("[image]\nname = \"App\"\n[base]\nref = \"nvidia/Cuda:12\"\n") ==
          "recipes/x.toml:2:8: bad reference \"App\": repository name must be lowercase\n"
          "  name = \"App\"\n"
          "         ^\n"
          "recipes/x.toml:4:7: bad reference \"nvidia/Cuda:12\": repository name must be lowercase\n"
          "  ref = \"nvidia/Cuda:12\"\n"
          "        ^");
    CHECK(c.errors(with_base("[image]\nname = \"example.com/app:1\"\n")) ==
          "recipes/x.toml:4:8: \"name\" in [image] must be a repository without a tag or digest, not "
          "\"example.com/app:1\"; list tags in \"tags\"\n"
          "  name = \"example.com/app:1\"\n"
          "         ^");
}

TEST_CASE("TOML syntax errors and duplicate keys come from the TOML parser") {
    Context c;
    CHECK(c.errors("[base]\nref = \"scratch\"\nref = \"scratch\"\n") ==
          "recipes/x.toml:3:7: Error while parsing key-value pair: cannot redefine existing string 'ref'\n"
          "  ref = \"scratch\"\n"
          "        ^");
    CHECK(c.errors("[base]\nref = \"scratch\"\n[base]\n") ==
          "recipes/x.toml:3:1: Error while parsing table header: cannot redefine existing table 'base'\n"
          "  [base]\n"
          "  ^");
}

TEST_CASE("tags: malformed and duplicate") {
    Context c;
    CHECK(c.errors(with_base("[image]\ntags = [\"a\", \"-b\", \"a\"]\n")) ==
          "recipes/x.toml:4:14: bad tag \"-b\" in [image].tags: use 1-128 letters, digits, \"_\", \".\" and \"-\", "
          "not starting with \".\" or \"-\"\n"
          "  tags = [\"a\", \"-b\", \"a\"]\n"
          "               ^\n"
          "recipes/x.toml:4:20: duplicate tag \"a\" in [image].tags\n"
          "  tags = [\"a\", \"-b\", \"a\"]\n"
          "                     ^");
}

TEST_CASE("bad platform") {
    Context c;
    CHECK(c.errors(with_base("[image]\nplatform = \"amd64\"\n")) ==
          "recipes/x.toml:4:12: bad platform \"amd64\": platform must look like os/arch[/variant], e.g. "
          "linux/amd64\n"
          "  platform = \"amd64\"\n"
          "             ^");
}

TEST_CASE("a step does exactly one thing") {
    Context c;
    c.file("a");
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\n\n[[step]]\nuser = \"1000\"\n")) ==
          "recipes/x.toml:6:1: [[step]] #2 needs one of \"copy\", \"run\", \"conda\"\n"
          "  [[step]]\n"
          "  ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\ncopy = { from = \"a\", to = \"/a\" }\n")) ==
          "recipes/x.toml:3:1: [[step]] #1 has both \"copy\" and \"run\"; a step does one thing\n"
          "  [[step]]\n"
          "  ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"true\"\ncopy = { from = \"a\", to = \"/a\" }\n"
                             "[step.conda]\nprefix = \"/opt/conda\"\npackages = [\"python\"]\n")) ==
          "recipes/x.toml:3:1: [[step]] #1 has \"copy\", \"run\" and \"conda\"; a step does one thing\n"
          "  [[step]]\n"
          "  ^");
}

TEST_CASE("copy: from outside the context, relative to, missing keys") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\n[step.copy]\nfrom = \"../secret\"\nto = \"app\"\n")) ==
          "recipes/x.toml:5:8: \"from\" in [[step]] #1.copy must be a path inside the recipe directory, not "
          "\"../secret\"\n"
          "  from = \"../secret\"\n"
          "         ^\n"
          "recipes/x.toml:6:6: \"to\" in [[step]] #1.copy must be an absolute path, not \"app\"\n"
          "  to = \"app\"\n"
          "       ^");
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"a/../../b\", to = \"/b\" }\n")) ==
          "recipes/x.toml:4:17: \"from\" in [[step]] #1.copy must be a path inside the recipe directory, not "
          "\"a/../../b\"\n"
          "  copy = { from = \"a/../../b\", to = \"/b\" }\n"
          "                  ^");
    CHECK(c.errors(with_base("[[step]]\ncopy = { from = \"/etc/passwd\", to = \"/b\" }\n")) ==
          "recipes/x.toml:4:17: \"from\" in [[step]] #1.copy must be a path inside the recipe directory, not "
          "\"/etc/passwd\"\n"
          "  copy = { from = \"/etc/passwd\", to = \"/b\" }\n"
          "                  ^");
    CHECK(c.errors(with_base("[[step]]\n[step.copy]\n")) ==
          "recipes/x.toml:4:1: [[step]] #1.copy needs \"from\"\n"
          "  [step.copy]\n"
          "  ^\n"
          "recipes/x.toml:4:1: [[step]] #1.copy needs \"to\"\n"
          "  [step.copy]\n"
          "  ^");
    CHECK(c.errors(with_base("[[step]]\ncopy = \"a /a\"\n")) ==
          "recipes/x.toml:4:8: \"copy\" in [[step]] #1 must be a table like { from = \"src\", to = \"/dst\" }, not a "
          "string\n"
          "  copy = \"a /a\"\n"
          "         ^");
}

TEST_CASE("copy: mode and owner") {
    Context c;
    c.file("a");
    auto step = [](std::string_view extra) {
        return with_base("[[step]]\n[step.copy]\nfrom = \"a\"\nto = \"/a\"\n" + std::string(extra));
    };
    CHECK(c.errors(step("mode = 755\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be octal, like 0o755 or \"0755\", not 755\n"
          "  mode = 755\n"
          "         ^");
    CHECK(c.errors(step("mode = 0x1ed\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be octal, like 0o755 or \"0755\", not 0x1ed\n"
          "  mode = 0x1ed\n"
          "         ^");
    CHECK(c.errors(step("mode = 0o17777\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be at most 0o7777, not 0o17777\n"
          "  mode = 0o17777\n"
          "         ^");
    CHECK(c.errors(step("mode = \"rwxr-xr-x\"\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be octal, like 0o755 or \"0755\", not \"rwxr-xr-x\"\n"
          "  mode = \"rwxr-xr-x\"\n"
          "         ^");
    CHECK(c.errors(step("mode = \"17777\"\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be at most 0o7777, not \"17777\"\n"
          "  mode = \"17777\"\n"
          "         ^");
    CHECK(c.errors(step("mode = 7.5\n")) ==
          "recipes/x.toml:7:8: \"mode\" in [[step]] #1.copy must be an octal integer like 0o755 or a string like "
          "\"0755\", not a float\n"
          "  mode = 7.5\n"
          "         ^");
    CHECK(c.errors(step("owner = \"root\"\n")) ==
          "recipes/x.toml:7:9: \"owner\" in [[step]] #1.copy must be \"uid:gid\" or \"uid\" with numeric ids, not "
          "\"root\"\n"
          "  owner = \"root\"\n"
          "          ^");
    CHECK(c.errors(step("owner = \"1000:\"\n")) ==
          "recipes/x.toml:7:9: \"owner\" in [[step]] #1.copy must be \"uid:gid\" or \"uid\" with numeric ids, not "
          "\"1000:\"\n"
          "  owner = \"1000:\"\n"
          "          ^");
    CHECK(c.errors(step("owner = -1\n")) ==
          "recipes/x.toml:7:9: \"owner\" in [[step]] #1.copy must be a uid from 0 to 4294967294, not -1\n"
          "  owner = -1\n"
          "          ^");
}

TEST_CASE("run: empty, shell with the list form, network, env, workdir") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\nrun = \"  \"\n")) ==
          "recipes/x.toml:4:7: \"run\" in [[step]] #1 must not be empty\n"
          "  run = \"  \"\n"
          "        ^");
    CHECK(c.errors(with_base("[[step]]\nrun = []\n")) ==
          "recipes/x.toml:4:7: \"run\" in [[step]] #1 must not be empty\n"
          "  run = []\n"
          "        ^");
    CHECK(c.errors(with_base("[[step]]\nrun = [\"make\"]\nshell = [\"/bin/bash\", \"-c\"]\n")) ==
          "recipes/x.toml:5:9: \"shell\" in [[step]] #1 only applies when \"run\" is a string\n"
          "  shell = [\"/bin/bash\", \"-c\"]\n"
          "          ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"make\"\nshell = []\nnetwork = \"bridge\"\n")) ==
          "recipes/x.toml:5:9: \"shell\" in [[step]] #1 must not be empty\n"
          "  shell = []\n"
          "          ^\n"
          "recipes/x.toml:6:11: \"network\" in [[step]] #1 must be \"host\" or \"none\", not \"bridge\"\n"
          "  network = \"bridge\"\n"
          "            ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"make\"\nenv = { \"A=B\" = \"1\" }\nworkdir = \"src\"\n")) ==
          "recipes/x.toml:5:9: bad variable name \"A=B\" in [[step]] #1.env: it must be non-empty and without \"=\"\n"
          "  env = { \"A=B\" = \"1\" }\n"
          "          ^\n"
          "recipes/x.toml:6:11: \"workdir\" in [[step]] #1 must be an absolute path, not \"src\"\n"
          "  workdir = \"src\"\n"
          "            ^");
}

TEST_CASE("conda: required keys and empty packages") {
    Context c;
    CHECK(c.errors(with_base("[[step]]\n[step.conda]\nchanels = [\"conda-forge\"]\n")) ==
          "recipes/x.toml:4:1: [[step]] #1.conda needs \"prefix\"\n"
          "  [step.conda]\n"
          "  ^\n"
          "recipes/x.toml:4:1: [[step]] #1.conda needs \"packages\"\n"
          "  [step.conda]\n"
          "  ^\n"
          "recipes/x.toml:5:1: unknown key \"chanels\" in [[step]] #1.conda; did you mean \"channels\"?\n"
          "  chanels = [\"conda-forge\"]\n"
          "  ^");
    CHECK(c.errors(with_base("[[step]]\nconda = { prefix = \"opt/conda\", packages = [] }\n")) ==
          "recipes/x.toml:4:20: \"prefix\" in [[step]] #1.conda must be an absolute path, not \"opt/conda\"\n"
          "  conda = { prefix = \"opt/conda\", packages = [] }\n"
          "                     ^\n"
          "recipes/x.toml:4:44: \"packages\" in [[step]] #1.conda must not be empty\n"
          "  conda = { prefix = \"opt/conda\", packages = [] }\n"
          "                                             ^");
    CHECK(c.errors(with_base("[[step]]\nconda = { prefix = \"/opt\", packages = [\"\"] }\n")) ==
          "recipes/x.toml:4:40: item 1 of \"packages\" in [[step]] #1.conda must not be empty\n"
          "  conda = { prefix = \"/opt\", packages = [\"\"] }\n"
          "                                         ^");
}

TEST_CASE("config: paths, ports, signals, env names") {
    Context c;
    CHECK(c.errors(with_base("[config]\nworkdir = \"app\"\nvolumes = [\"/data\", \"cache\"]\n")) ==
          "recipes/x.toml:4:11: \"workdir\" in [config] must be an absolute path, not \"app\"\n"
          "  workdir = \"app\"\n"
          "            ^\n"
          "recipes/x.toml:5:21: item 2 of \"volumes\" in [config] must be an absolute path, not \"cache\"\n"
          "  volumes = [\"/data\", \"cache\"]\n"
          "                      ^");
    CHECK(c.errors(with_base("[config]\nports = [\"80\", 80, \"70000\", \"53/http\", 0]\n")) ==
          "recipes/x.toml:4:16: duplicate port \"80/tcp\" in [config].ports\n"
          "  ports = [\"80\", 80, \"70000\", \"53/http\", 0]\n"
          "                 ^\n"
          "recipes/x.toml:4:20: bad port \"70000\" in [config].ports: expected PORT or PORT/PROTO, with PORT 1-65535 "
          "and PROTO tcp, udp or sctp\n"
          "  ports = [\"80\", 80, \"70000\", \"53/http\", 0]\n"
          "                     ^\n"
          "recipes/x.toml:4:29: bad port \"53/http\" in [config].ports: expected PORT or PORT/PROTO, with PORT "
          "1-65535 and PROTO tcp, udp or sctp\n"
          "  ports = [\"80\", 80, \"70000\", \"53/http\", 0]\n"
          "                              ^\n"
          "recipes/x.toml:4:40: bad port 0 in [config].ports: expected PORT or PORT/PROTO, with PORT 1-65535 and "
          "PROTO tcp, udp or sctp\n"
          "  ports = [\"80\", 80, \"70000\", \"53/http\", 0]\n"
          "                                         ^");
    CHECK(c.errors(with_base("[config]\nstop_signal = \"SIGFOO\"\n")) ==
          "recipes/x.toml:4:15: \"stop_signal\" in [config] must be a signal name like \"SIGTERM\" or a number 1-64, "
          "not \"SIGFOO\"\n"
          "  stop_signal = \"SIGFOO\"\n"
          "                ^");
    CHECK(c.errors(with_base("[config]\nstop_signal = 99\n")) ==
          "recipes/x.toml:4:15: \"stop_signal\" in [config] must be a signal name like \"SIGTERM\" or a number 1-64, "
          "not \"99\"\n"
          "  stop_signal = 99\n"
          "                ^");
    CHECK(c.errors(with_base("[config]\nenv = { \"\" = \"x\" }\nlabels = { \"\" = \"x\" }\n")) ==
          "recipes/x.toml:4:9: bad variable name \"\" in [config].env: it must be non-empty and without \"=\"\n"
          "  env = { \"\" = \"x\" }\n"
          "          ^\n"
          "recipes/x.toml:5:12: empty label name in [config].labels\n"
          "  labels = { \"\" = \"x\" }\n"
          "             ^");
}

TEST_CASE("every mistake is reported at once, in source order") {
    Context c;
    CHECK(c.errors("[image]\n"
                   "name = \"registry.internal:5000/ml/pytorch\"\n"
                   "tgas = [\"2.4\"]\n"
                   "\n"
                   "[base]\n"
                   "ref = \"oci:missing\"\n"
                   "\n"
                   "[[step]]\n"
                   "run = 1\n"
                   "\n"
                   "[[step]]\n"
                   "\n"
                   "[config]\n"
                   "workdir = \"workspace\"\n") ==
          "recipes/x.toml:3:1: unknown key \"tgas\" in [image]; did you mean \"tags\"?\n"
          "  tgas = [\"2.4\"]\n"
          "  ^\n"
          "recipes/x.toml:6:7: missing file: \"missing\" (looked for " + c.abs("missing") + ")\n"
          "  ref = \"oci:missing\"\n"
          "        ^\n"
          "recipes/x.toml:9:7: \"run\" in [[step]] #1 must be a string or an array of strings, not an integer\n"
          "  run = 1\n"
          "        ^\n"
          "recipes/x.toml:11:1: [[step]] #2 needs one of \"copy\", \"run\", \"conda\"\n"
          "  [[step]]\n"
          "  ^\n"
          "recipes/x.toml:14:11: \"workdir\" in [config] must be an absolute path, not \"workspace\"\n"
          "  workdir = \"workspace\"\n"
          "            ^");
}

TEST_CASE("the diagnostics are kept for callers") {
    Context c;
    try {
        (void)c.parse(with_base("[image]\ntgas = 1\n"));
        FAIL("no error");
    } catch (const ocibuild::recipe::RecipeError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        const auto& d = e.diagnostics()[0];
        CHECK(d.pos.file == "recipes/x.toml");
        CHECK(d.pos.line == 4);
        CHECK(d.pos.column == 1);
        CHECK(d.message == "unknown key \"tgas\" in [image]; did you mean \"tags\"?");
        CHECK(d.source_line == "tgas = 1");
    }
}

TEST_CASE("the caret lines up under tabs and non-ASCII text") {
    Context c;
    CHECK(c.errors(with_base("[config]\n\tlabels = { \"é\" = \"ü\", \"x\" = 1 }\n")) ==
          "recipes/x.toml:4:30: \"x\" in [config].labels must be a string, not an integer\n"
          "  \tlabels = { \"é\" = \"ü\", \"x\" = 1 }\n"
          "  \t" + std::string(28, ' ') + "^");
}

TEST_CASE("strings in messages are escaped") {
    Context c;
    CHECK(c.errors(with_base("[config]\nnetwork = \"a\\nb\"\n")) ==
          "recipes/x.toml:4:1: unknown key \"network\" in [config]\n"
          "  network = \"a\\nb\"\n"
          "  ^");
    CHECK(c.errors(with_base("[[step]]\nrun = \"x\"\nnetwork = \"a\\nb\\\"\"\n")) ==
          "recipes/x.toml:5:11: \"network\" in [[step]] #1 must be \"host\" or \"none\", not \"a\\nb\\\"\"\n"
          "  network = \"a\\nb\\\"\"\n"
          "            ^");
}

}  // TEST_SUITE
