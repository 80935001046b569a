#pragma once
// Internal to the solver: the libsolv pool built from the records a request can reach, and the
// namespace callback that answers every match spec. solver.cpp builds and solves, solver_explain.cpp
// turns libsolv's problems into sentences about the user's specs.
#include "solv_includes.hpp"

#include <cstdint>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ocibuild/conda/match_spec.hpp"
#include "ocibuild/conda/solver.hpp"
#include "ocibuild/conda/version.hpp"

namespace ocibuild::conda::detail {

/// The package name of a depends/constrains string ("python >=3.8" → "python",
/// "conda-forge::numpy[version='>=1']" → "numpy"), without a full parse.
[[nodiscard]] std::string_view spec_name(std::string_view spec);
/// A URL without trailing slashes.
[[nodiscard]] std::string_view strip_slash(std::string_view url);
/// Up to three names close to `wanted` (typos, or names containing it), closest first.
[[nodiscard]] std::vector<std::string> close_names(std::string_view wanted, const std::set<std::string>& names);

inline constexpr std::uint32_t no_channel = 0xffffffffU;

/// A libsolv Queue freed on scope exit.
struct QueueHolder {
    Queue q;
    QueueHolder() { queue_init(&q); }
    ~QueueHolder() { queue_free(&q); }
    QueueHolder(const QueueHolder&) = delete;
    QueueHolder& operator=(const QueueHolder&) = delete;
};

/// One solvable: where its record lives (repo == nullptr: a virtual package).
struct Candidate {
    const RepoData* repo = nullptr;
    std::uint32_t index = 0;             // record index in repo, or index in the virtual package list
    std::uint32_t channel = no_channel;  // index in SolveRequest::channels
    std::uint32_t name = 0;              // index in PoolContext::names
    std::uint32_t version_string = 0;    // index in NameEntry::version_strings
    std::uint32_t version_rank = 0;      // conda order among the name's versions (equal versions share it)
    std::string_view version;            // as written
    std::string_view build;
    std::uint64_t build_number = 0;
    std::uint64_t timestamp = 0;
    std::size_t track_features = 0;
    std::uint32_t tie_rank = 0;  // among builds conda ranks equal: higher = dependencies allow newer versions
};

struct NameEntry {
    std::string name;
    std::vector<std::string_view> version_strings;  // distinct, as written
    std::vector<Version> versions;                  // parallel to version_strings
    std::vector<Id> solvables;                      // ascending
};

/// A depends/constrains/request string, parsed once.
struct ParsedDep {
    std::optional<MatchSpec> spec;  // nullopt: it does not parse
    std::string error;              // why not
};

class PoolContext {
public:
    explicit PoolContext(const SolveRequest& request);
    ~PoolContext();
    PoolContext(const PoolContext&) = delete;
    PoolContext& operator=(const PoolContext&) = delete;

    /// Loads the records reachable from `user_specs` (already parsed, parallel to request.specs)
    /// and the virtual packages, then creates whatprovides. Throws SolveError for unknown names.
    void load(const std::vector<MatchSpec>& user_specs);

    /// The namespace dependency standing for `spec` (negated: the packages of its name it rejects).
    [[nodiscard]] Id dep(std::string_view spec, bool negated);
    /// Whether `dep` is one of ours, and its spec text as written.
    [[nodiscard]] bool is_spec_dep(Id dep) const;
    [[nodiscard]] std::string_view dep_text(Id dep) const;
    [[nodiscard]] const ParsedDep& parsed(Id spec_string_id);

    /// The providers of namespace dep (name, evr): called by libsolv, never throws.
    Id providers(Id name, Id evr) noexcept;
    void rethrow_pending();

    [[nodiscard]] Pool* pool() const noexcept { return pool_; }
    [[nodiscard]] const Candidate* candidate(Id solvable) const;
    [[nodiscard]] const NameEntry* entry(std::string_view name) const;
    [[nodiscard]] const std::vector<NameEntry>& names() const noexcept { return names_; }
    [[nodiscard]] const SolveRequest& request() const noexcept { return request_; }
    [[nodiscard]] const std::vector<Id>& virtual_solvables() const noexcept { return virtual_solvables_; }
    /// Names that strict priority took from one channel although other channels also have them.
    [[nodiscard]] bool strict_hid(std::string_view name, std::uint32_t* kept_channel) const;

private:
    struct Loaded {
        const RepoData* repo;
        std::uint32_t channel;
        std::uint32_t index;
    };
    void add_solvables(const std::vector<std::vector<Loaded>>& by_name);
    void rank_ties(std::vector<std::vector<Candidate>>& pending);
    /// The helper ids of the one-package-per-name ladder: 'x' (candidate i's token), 's' (step i).
    Id one_per_name_id(std::uint32_t name, char role, std::size_t i);
    [[nodiscard]] bool channel_matches(const std::string& spec_channel, std::uint32_t channel) const;
    [[nodiscard]] bool candidate_matches(const MatchSpec& spec, const Candidate& c, std::vector<std::int8_t>& verdicts,
                                         const NameEntry& entry) const;
    std::uint32_t name_index(std::string_view name);

    const SolveRequest& request_;
    Pool* pool_ = nullptr;
    Id match_flag_ = 0;
    Id negate_flag_ = 0;
    std::vector<NameEntry> names_;
    std::unordered_map<std::string, std::uint32_t> name_lookup_;
    std::vector<Candidate> candidates_;  // by solvable id - first_solvable_
    Id first_solvable_ = 0;
    std::vector<Id> virtual_solvables_;
    std::unordered_map<Id, ParsedDep> parsed_;
    std::unordered_map<std::string, std::uint32_t> strict_kept_;  // name → channel strict priority kept
    std::exception_ptr pending_;
};

/// The SolveError text for user specs (indices into request.specs) that match no package.
[[nodiscard]] std::string explain_unmatched(PoolContext& ctx, const std::vector<std::size_t>& specs);
/// The SolveError text for a failed solve.
[[nodiscard]] std::string explain_problems(PoolContext& ctx, Solver* solver, const std::vector<Id>& user_deps);

}  // namespace ocibuild::conda::detail
