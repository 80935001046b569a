#include "ocibuild/core/temp_dir.hpp"

#include <cstdlib>
#include <string>
#include <system_error>

#include "ocibuild/core/error.hpp"

namespace ocibuild::core {

TempDir::TempDir(const std::filesystem::path& parent, const char* prefix) {
    auto base = parent.empty() ? std::filesystem::temp_directory_path() : parent;
    std::string tmpl = (base / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw_errno("cannot create a temporary directory in " + base.string());
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

}  // namespace ocibuild::core
