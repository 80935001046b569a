#pragma once
// Repodata of one channel subdir (repodata.json), parsed once with simdjson into a compact,
// interned form: conda-forge's linux-64 has about half a million records, and a solve touches few
// of them. Rules (conda/rattler): a `.conda` record replaces the `.tar.bz2` of the same stem;
// files listed in `removed` are dropped; records with record_version > 1 are skipped; artifact
// URLs are `info.base_url` (CEP 15; absolute or relative to the repodata) + file name, else the
// subdir URL + file name.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ocibuild::conda {

/// One record, materialized: answers, lock files, installs.
struct PackageRecord {
    std::string name;
    std::string version;
    std::string build;
    std::uint64_t build_number = 0;
    std::vector<std::string> depends;
    std::vector<std::string> constrains;
    std::vector<std::string> track_features;  // split at spaces/commas
    std::string subdir;
    std::string noarch;  // "", "python" or "generic" (old boolean true → "generic")
    std::string license;
    std::string license_family;
    std::string md5;     // lower-case hex; empty when the channel lacks it
    std::string sha256;  // lower-case hex; empty when the channel lacks it
    std::uint64_t size = 0;
    std::uint64_t timestamp = 0;  // ms since the epoch, 0 when absent
    std::string python_site_packages_path;
    std::string fn;       // artifact file name
    std::string url;      // full artifact URL
    std::string channel;  // Channel::url of the channel it came from

    /// "name-version-build", conda's dist string.
    [[nodiscard]] std::string dist_name() const { return name + "-" + version + "-" + build; }
    bool operator==(const PackageRecord&) const = default;
};

class RepoData {
public:
    RepoData();

    /// Parses repodata JSON. Takes the text by value so it can be padded for simdjson without a
    /// copy when capacity allows (reserve size + 64). `subdir_url` is where the file came from
    /// ("https://…/conda-forge/linux-64/"), `channel_url` goes into every record, `source` names
    /// the file or URL in errors: core::Error(invalid_input) "<source>: byte N: <what>".
    [[nodiscard]] static RepoData parse(std::string json, std::string subdir_url, std::string channel_url,
                                        std::string_view source);

    [[nodiscard]] std::size_t size() const noexcept;
    [[nodiscard]] const std::string& subdir() const noexcept;       // info.subdir, else from the URL
    [[nodiscard]] const std::string& channel_url() const noexcept;

    // Compact access for the solver; i < size().
    [[nodiscard]] std::string_view name(std::size_t i) const;
    [[nodiscard]] std::string_view version(std::size_t i) const;
    [[nodiscard]] std::string_view build(std::size_t i) const;
    [[nodiscard]] std::uint64_t build_number(std::size_t i) const;
    [[nodiscard]] std::size_t track_feature_count(std::size_t i) const;
    [[nodiscard]] std::uint64_t timestamp(std::size_t i) const;
    [[nodiscard]] std::vector<std::string_view> depends(std::size_t i) const;
    [[nodiscard]] std::vector<std::string_view> constrains(std::size_t i) const;
    [[nodiscard]] PackageRecord record(std::size_t i) const;

    /// Record indices with this name, in file order; empty when none.
    [[nodiscard]] std::span<const std::uint32_t> by_name(std::string_view name) const;
    /// Every package name present, sorted.
    [[nodiscard]] std::vector<std::string_view> names() const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
};

}  // namespace ocibuild::conda
