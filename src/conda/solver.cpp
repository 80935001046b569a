// The solver: loads the records a request can reach into a libsolv pool (conda's candidate order
// encoded in each solvable's evr), answers match specs through the namespace callback, and reads
// the answer back as records.
#include "solv_includes.hpp"  // first: it renames a C++20 keyword

#include "ocibuild/conda/solver.hpp"


#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <memory>
#include <tuple>
#include <set>
#include <unordered_set>

#include "solver_pool.hpp"

namespace ocibuild::conda {
namespace detail {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
}

bool is_virtual_name(std::string_view name) { return name.starts_with("__"); }

Id namespace_callback(Pool* /*pool*/, void* data, Id name, Id evr) {
    return static_cast<PoolContext*>(data)->providers(name, evr);
}

}  // namespace

std::string_view strip_slash(std::string_view url) {
    while (!url.empty() && url.back() == '/') url.remove_suffix(1);
    return url;
}

std::string_view spec_name(std::string_view spec) {
    while (!spec.empty() && std::isspace(static_cast<unsigned char>(spec.front()))) spec.remove_prefix(1);
    // `channel::name` / `channel/subdir:ns:name`: the name follows the last ':' before any
    // version text (versions hold no ':' before a space or an operator).
    std::size_t end = spec.find_first_of(" =<>!~[(^,|");
    std::string_view head = spec.substr(0, end);
    if (std::size_t colon = head.rfind(':'); colon != std::string_view::npos) {
        spec.remove_prefix(colon + 1);
        end = spec.find_first_of(" =<>!~[(^,|");
    }
    return spec.substr(0, end);
}

PoolContext::PoolContext(const SolveRequest& request) : request_(request), pool_(pool_create()) {
    match_flag_ = pool_str2id(pool_, "conda:match", 1);
    negate_flag_ = pool_str2id(pool_, "conda:reject", 1);
    pool_setnamespacecallback(pool_, namespace_callback, this);
}

PoolContext::~PoolContext() { pool_free(pool_); }

std::uint32_t PoolContext::name_index(std::string_view name) {
    std::string key = lower(name);
    auto [it, inserted] = name_lookup_.try_emplace(key, static_cast<std::uint32_t>(names_.size()));
    if (inserted) names_.push_back(NameEntry{std::string(name), {}, {}, {}});
    return it->second;
}

const NameEntry* PoolContext::entry(std::string_view name) const {
    auto it = name_lookup_.find(lower(name));
    return it == name_lookup_.end() ? nullptr : &names_[it->second];
}

const Candidate* PoolContext::candidate(Id solvable) const {
    if (solvable < first_solvable_ || static_cast<std::size_t>(solvable - first_solvable_) >= candidates_.size()) {
        return nullptr;
    }
    return &candidates_[static_cast<std::size_t>(solvable - first_solvable_)];
}

bool PoolContext::channel_matches(const std::string& spec_channel, std::uint32_t channel) const {
    if (channel >= request_.channels.size()) return false;
    std::string_view wanted = strip_slash(spec_channel);
    if (channel < request_.channel_names.size() && strip_slash(request_.channel_names[channel]) == wanted) return true;
    for (const RepoData* repo : request_.channels[channel]) {
        std::string_view url = strip_slash(repo->channel_url());
        if (url == wanted) return true;
        if (url.size() > wanted.size() && url.ends_with(wanted) && url[url.size() - wanted.size() - 1] == '/') {
            return true;
        }
    }
    return false;
}

bool PoolContext::strict_hid(std::string_view name, std::uint32_t* kept_channel) const {
    auto it = strict_kept_.find(lower(name));
    if (it == strict_kept_.end()) return false;
    if (kept_channel) *kept_channel = it->second;
    return true;
}

void PoolContext::load(const std::vector<MatchSpec>& user_specs) {
    const auto& channels = request_.channels;
    std::unordered_map<std::string, std::string> pinned;  // name → channel a user spec names
    std::vector<std::string> pending;
    std::unordered_set<std::string> seen;
    auto enqueue = [&](std::string_view name) {
        if (name.empty() || is_virtual_name(name)) return;
        std::string key = lower(name);
        if (seen.insert(key).second) pending.push_back(std::move(key));
    };
    std::vector<std::string> user_names;
    for (const MatchSpec& spec : user_specs) {
        if (spec.name().is_exact()) {
            enqueue(spec.name().to_string());
            user_names.push_back(lower(spec.name().to_string()));
            if (!spec.channel().empty()) pinned[lower(spec.name().to_string())] = spec.channel();
            continue;
        }
        for (const auto& channel : channels) {
            for (const RepoData* repo : channel) {
                for (std::string_view name : repo->names()) {
                    if (spec.name().matches(name)) enqueue(name);
                }
            }
        }
    }

    std::vector<std::vector<Loaded>> loaded;  // parallel to names_
    for (std::size_t next = 0; next < pending.size(); ++next) {
        const std::string name = pending[next];  // copy: pending grows below
        std::vector<std::uint32_t> having;
        for (std::uint32_t c = 0; c < channels.size(); ++c) {
            for (const RepoData* repo : channels[c]) {
                if (!repo->by_name(name).empty()) {
                    having.push_back(c);
                    break;
                }
            }
        }
        if (having.empty()) continue;
        std::vector<std::uint32_t> allowed = having;
        if (request_.priority == ChannelPriority::strict) {
            std::uint32_t chosen = having.front();
            if (auto it = pinned.find(name); it != pinned.end()) {
                for (std::uint32_t c : having) {
                    if (channel_matches(it->second, c)) {
                        chosen = c;
                        break;
                    }
                }
            }
            allowed = {chosen};
            if (having.size() > 1) strict_kept_[name] = chosen;
        }
        std::uint32_t index = name_index(name);
        if (loaded.size() <= index) loaded.resize(index + 1);
        for (std::uint32_t c : allowed) {
            for (const RepoData* repo : channels[c]) {
                for (std::uint32_t i : repo->by_name(name)) {
                    loaded[index].push_back(Loaded{repo, c, i});
                    for (std::string_view d : repo->depends(i)) enqueue(spec_name(d));
                }
            }
        }
    }

    std::vector<std::string> unknown;
    for (const std::string& name : user_names) {
        // A virtual package the target lacks is explained with the other unmatched specs.
        if (!entry(name) && !is_virtual_name(name) && std::find(unknown.begin(), unknown.end(), name) == unknown.end()) {
            unknown.push_back(name);
        }
    }
    if (!unknown.empty()) {
        std::string channel_list;
        std::vector<std::string> subdirs;
        std::set<std::string> all_names;
        for (std::size_t c = 0; c < channels.size(); ++c) {
            if (c) channel_list += ", ";
            channel_list += c < request_.channel_names.size() ? request_.channel_names[c]
                            : channels[c].empty()             ? std::string("channel ") + std::to_string(c)
                                                              : channels[c].front()->channel_url();
            for (const RepoData* repo : channels[c]) {
                if (std::find(subdirs.begin(), subdirs.end(), repo->subdir()) == subdirs.end()) {
                    subdirs.push_back(repo->subdir());
                }
                for (std::string_view n : repo->names()) all_names.emplace(n);
            }
        }
        std::string subdir_list;
        for (const auto& s : subdirs) subdir_list += (subdir_list.empty() ? "" : ", ") + s;
        std::string message;
        for (const std::string& name : unknown) {
            if (!message.empty()) message += "\n";
            message += "no package named '" + name + "' in " + (channels.empty() ? "any channel (none given)" : channel_list);
            if (!subdir_list.empty()) message += " (" + subdir_list + ")";
            std::vector<std::string> close = close_names(name, all_names);
            if (!close.empty()) {
                message += "; did you mean ";
                for (std::size_t i = 0; i < close.size(); ++i) {
                    message += (i ? (i + 1 == close.size() ? " or " : ", ") : "") + ("'" + close[i] + "'");
                }
                message += "?";
            }
        }
        throw SolveError(message);
    }

    add_solvables(loaded);
}

std::vector<std::string> close_names(std::string_view wanted, const std::set<std::string>& names) {
    // Levenshtein distance, capped: only near misses and containment are worth suggesting.
    auto distance = [](std::string_view a, std::string_view b) {
        std::vector<std::size_t> row(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= a.size(); ++i) {
            std::size_t diag = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                std::size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diag = up;
            }
        }
        return row[b.size()];
    };
    const std::size_t limit = wanted.size() <= 4 ? 1 : 2;
    std::vector<std::pair<std::size_t, std::string>> scored;
    for (const std::string& name : names) {
        std::size_t len_diff = name.size() > wanted.size() ? name.size() - wanted.size() : wanted.size() - name.size();
        bool contains = wanted.size() >= 4 && name.find(wanted) != std::string::npos;
        if (!contains && len_diff > limit) continue;
        std::size_t d = contains ? limit : distance(wanted, name);
        if (d <= limit) scored.emplace_back(d * 1000 + len_diff, name);
    }
    std::sort(scored.begin(), scored.end());
    std::vector<std::string> out;
    for (std::size_t i = 0; i < scored.size() && i < 3; ++i) out.push_back(scored[i].second);
    return out;
}

void PoolContext::add_solvables(const std::vector<std::vector<Loaded>>& loaded) {
    // Rank each name's versions in conda's order; equal versions (1.1, 1.1.0) share a rank.
    std::vector<std::vector<std::uint32_t>> string_of(loaded.size());  // per loaded record
    std::vector<std::vector<std::uint32_t>> rank_of(loaded.size());    // per version string
    std::vector<std::vector<bool>> usable(loaded.size());
    for (std::size_t n = 0; n < loaded.size(); ++n) {
        NameEntry& e = names_[n];
        std::unordered_map<std::string_view, std::uint32_t> string_index;
        for (const Loaded& l : loaded[n]) {
            std::string_view v = l.repo->version(l.index);
            auto [it, inserted] = string_index.try_emplace(v, static_cast<std::uint32_t>(e.version_strings.size()));
            if (inserted) {
                e.version_strings.push_back(v);
                auto parsed = Version::parse(v);
                e.versions.push_back(parsed ? *parsed : Version());
                usable[n].push_back(static_cast<bool>(parsed));
            }
            string_of[n].push_back(it->second);
        }
        std::vector<std::uint32_t> order(e.versions.size());
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
            auto cmp = e.versions[a] <=> e.versions[b];
            return cmp != 0 ? cmp < 0 : e.version_strings[a] < e.version_strings[b];
        });
        rank_of[n].assign(order.size(), 0);
        std::uint32_t rank = 0;
        for (std::size_t i = 0; i < order.size(); ++i) {
            if (i > 0 && e.versions[order[i]] != e.versions[order[i - 1]]) ++rank;
            rank_of[n][order[i]] = rank;
        }
    }

    // Every usable record becomes a candidate first, so that ties can be ranked by what the
    // candidates depend on before any solvable (and its evr) exists.
    const auto& channels = request_.channels;
    const std::size_t channel_count = channels.size();
    std::vector<std::vector<Candidate>> pending(loaded.size());
    for (std::size_t n = 0; n < loaded.size(); ++n) {
        for (std::size_t k = 0; k < loaded[n].size(); ++k) {
            const Loaded& l = loaded[n][k];
            const std::uint32_t vs = string_of[n][k];
            if (!usable[n][vs]) continue;  // a version conda cannot order is never a candidate
            Candidate cand;
            cand.repo = l.repo;
            cand.index = l.index;
            cand.channel = l.channel;
            cand.name = static_cast<std::uint32_t>(n);
            cand.version_string = vs;
            cand.version_rank = rank_of[n][vs];
            cand.version = names_[n].version_strings[vs];
            cand.build = l.repo->build(l.index);
            cand.build_number = l.repo->build_number(l.index);
            cand.timestamp = l.repo->timestamp(l.index);
            cand.track_features = l.repo->track_feature_count(l.index);
            pending[n].push_back(cand);
        }
    }
    rank_ties(pending);

    // Solvables are added repo by repo (channel order, then subdir order), names sorted, so ids
    // and therefore libsolv's tie-breaking are deterministic.
    std::vector<std::uint32_t> sorted_names(loaded.size());
    for (std::uint32_t i = 0; i < sorted_names.size(); ++i) sorted_names[i] = i;
    std::sort(sorted_names.begin(), sorted_names.end(),
              [&](std::uint32_t a, std::uint32_t b) { return names_[a].name < names_[b].name; });
    first_solvable_ = pool_->nsolvables;
    char evr[160];
    for (std::uint32_t c = 0; c < channel_count; ++c) {
        for (const RepoData* repo : channels[c]) {
            std::string label = (c < request_.channel_names.size() ? request_.channel_names[c] : repo->channel_url()) +
                                "/" + repo->subdir();
            Repo* r = repo_create(pool_, label.c_str());
            r->priority = request_.priority == ChannelPriority::flexible ? -static_cast<int>(c) : 0;
            for (std::uint32_t n : sorted_names) {
                for (const Candidate& cand : pending[n]) {
                    if (cand.repo != repo || cand.channel != c) continue;
                    // conda's order: fewer track_features (the epoch), higher version (its rank),
                    // then (disabled priority: the channel), build number, dependencies' versions
                    // (tie), newer timestamp. libsolv's rpm-style evr comparison is numeric per part.
                    const int epoch = 100 - static_cast<int>(std::min<std::size_t>(cand.track_features, 99));
                    const std::size_t channel_rank = request_.priority == ChannelPriority::disabled ? channel_count - c : 0;
                    std::snprintf(evr, sizeof evr, "%d:%u-%zu.%llu.%u.%llu", epoch, cand.version_rank, channel_rank,
                                  static_cast<unsigned long long>(cand.build_number), cand.tie_rank,
                                  static_cast<unsigned long long>(cand.timestamp));
                    Id p = repo_add_solvable(r);
                    Solvable* s = pool_id2solvable(pool_, p);
                    s->name = pool_strn2id(pool_, names_[n].name.data(), static_cast<unsigned>(names_[n].name.size()), 1);
                    s->evr = pool_str2id(pool_, evr, 1);
                    s->arch = ARCH_NOARCH;
                    // Each dependency array is completed before the next starts: libsolv appends
                    // in place only to the array it wrote last.
                    const bool laddered = pending[n].size() > 1;
                    const std::size_t ladder_index = names_[n].solvables.size();
                    s->provides = repo_addid_dep(r, s->provides, pool_rel2id(pool_, s->name, s->evr, REL_EQ, 1), 0);
                    if (laddered) s->provides = repo_addid_dep(r, s->provides, one_per_name_id(n, 'x', ladder_index), 0);
                    for (std::string_view d : repo->depends(cand.index)) {
                        s->solv_requires = repo_addid_dep(r, s->solv_requires, dep(d, false), 0);
                    }
                    if (laddered) {
                        s->solv_requires = repo_addid_dep(r, s->solv_requires, one_per_name_id(n, 's', ladder_index), 0);
                    }
                    for (std::string_view d : repo->constrains(cand.index)) {
                        s->conflicts = repo_addid_dep(r, s->conflicts, dep(d, true), 0);
                    }
                    if (static_cast<std::size_t>(p - first_solvable_) != candidates_.size()) {
                        throw core::Error(core::ErrorCategory::internal, "solver: solvable ids are not contiguous");
                    }
                    candidates_.push_back(cand);
                    names_[n].solvables.push_back(p);
                }
            }
            repo_internalize(r);
        }
    }

    // Virtual packages: a repo of their own, each installed by a job (solve()), never part of the
    // answer. Not libsolv's "installed" repo: that would make it compute update and choice rules
    // over every dependency, which cost more than the rest of a large solve.
    Repo* virtual_repo = repo_create(pool_, "@virtual");
    const auto& virtuals = request_.virtual_packages.packages;
    for (std::uint32_t i = 0; i < virtuals.size(); ++i) {
        const VirtualPackage& v = virtuals[i];
        auto version = Version::parse(v.version);
        if (!version) {
            throw core::Error(core::ErrorCategory::invalid_input,
                              "virtual package " + v.name + ": version '" + v.version + "' does not parse: " +
                                  version.error().message);
        }
        std::uint32_t n = name_index(v.name);
        NameEntry& e = names_[n];
        Candidate cand;
        cand.index = i;
        cand.name = n;
        cand.version_string = static_cast<std::uint32_t>(e.version_strings.size());
        e.version_strings.push_back(v.version);
        e.versions.push_back(*version);
        cand.version = v.version;
        cand.build = v.build;
        Id p = repo_add_solvable(virtual_repo);
        Solvable* s = pool_id2solvable(pool_, p);
        s->name = pool_str2id(pool_, v.name.c_str(), 1);
        s->evr = pool_str2id(pool_, "0", 1);
        s->arch = ARCH_NOARCH;
        s->provides = repo_addid_dep(virtual_repo, s->provides, pool_rel2id(pool_, s->name, s->evr, REL_EQ, 1), 0);
        if (static_cast<std::size_t>(p - first_solvable_) != candidates_.size()) {
            throw core::Error(core::ErrorCategory::internal, "solver: solvable ids are not contiguous");
        }
        candidates_.push_back(cand);
        e.solvables.push_back(p);
        virtual_solvables_.push_back(p);
    }
    repo_internalize(virtual_repo);

    // One package per name. libsolv's own rule for that (every solvable conflicts with every other
    // of its name) is quadratic: millions of rules for conda-forge's python or libgcc builds. It is
    // switched off (SOLVER_MULTIVERSION in solve()) and replaced by a ladder of helper solvables,
    // linear in the builds: candidate i requires step i, step i requires step i+1 and conflicts
    // with candidate i+1. Two candidates i < j would force step j-1, which excludes candidate j.
    Repo* ladder = repo_create(pool_, "@one-per-name");
    for (std::uint32_t n : sorted_names) {
        const std::size_t k = pending[n].size();
        if (k < 2) continue;
        for (std::size_t i = 0; i < k; ++i) {
            Id p = repo_add_solvable(ladder);
            Solvable* s = pool_id2solvable(pool_, p);
            s->name = one_per_name_id(n, 's', i);
            s->evr = ID_EMPTY;
            s->arch = ARCH_NOARCH;
            s->provides = repo_addid_dep(ladder, s->provides, s->name, 0);
            if (i + 1 < k) {
                s->solv_requires = repo_addid_dep(ladder, s->solv_requires, one_per_name_id(n, 's', i + 1), 0);
                s->conflicts = repo_addid_dep(ladder, s->conflicts, one_per_name_id(n, 'x', i + 1), 0);
            }
        }
    }
    repo_internalize(ladder);
    pool_createwhatprovides(pool_);
}

void PoolContext::rank_ties(std::vector<std::vector<Candidate>>& pending) {
    // Builds that tie on everything conda ranks (one numpy version built for several pythons)
    // are ordered by their dependencies, as rattler does: the candidate whose common dependencies
    // allow higher versions comes first, so `numpy` alone brings the newest python, not the
    // build that happens to come first in the file.
    std::unordered_map<std::string_view, std::int64_t> best_rank;  // spec text → highest matching rank
    auto highest = [&](std::string_view spec_text) -> std::int64_t {
        auto it = best_rank.find(spec_text);
        if (it != best_rank.end()) return it->second;
        std::int64_t best = -1;
        const ParsedDep& pd = parsed(pool_strn2id(pool_, spec_text.data(), static_cast<unsigned>(spec_text.size()), 1));
        const std::optional<MatchSpec>& spec = pd.spec;
        if (spec && spec->name().is_exact()) {
            auto idx = name_lookup_.find(lower(spec->name().to_string()));
            if (idx != name_lookup_.end() && idx->second < pending.size()) {
                const NameEntry& e = names_[idx->second];
                std::vector<std::int8_t> verdicts(e.versions.size(), -1);
                for (const Candidate& c : pending[idx->second]) {
                    if (static_cast<std::int64_t>(c.version_rank) > best && candidate_matches(*spec, c, verdicts, e)) {
                        best = c.version_rank;
                    }
                }
            }
        }
        best_rank.emplace(spec_text, best);
        return best;
    };
    for (auto& cands : pending) {
        std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t, std::uint64_t>, std::vector<std::size_t>> groups;
        const bool by_channel = request_.priority == ChannelPriority::disabled;
        for (std::size_t i = 0; i < cands.size(); ++i) {
            const Candidate& c = cands[i];
            groups[{c.track_features, c.version_rank, by_channel ? c.channel : 0, c.build_number}].push_back(i);
        }
        for (auto& [key, members] : groups) {
            if (members.size() < 2) continue;
            std::vector<std::vector<std::string_view>> depends(members.size());
            for (std::size_t m = 0; m < members.size(); ++m) {
                depends[m] = cands[members[m]].repo->depends(cands[members[m]].index);
            }
            if (std::all_of(depends.begin() + 1, depends.end(), [&](const auto& d) { return d == depends[0]; })) {
                continue;  // the same dependencies: nothing to rank them by
            }
            // Dependency names every member has, sorted; each member's key is the highest
            // version rank its spec for that name allows.
            std::vector<std::map<std::string_view, std::int64_t>> allows(members.size());
            for (std::size_t m = 0; m < members.size(); ++m) {
                for (std::string_view d : depends[m]) {
                    std::string_view name = spec_name(d);
                    std::int64_t h = highest(d);
                    auto [it, inserted] = allows[m].try_emplace(name, h);
                    if (!inserted) it->second = std::min(it->second, h);
                }
            }
            std::vector<std::string_view> common;
            for (const auto& [name, rank] : allows[0]) {
                bool everywhere = std::all_of(allows.begin() + 1, allows.end(),
                                              [&](const auto& a) { return a.count(name) != 0; });
                if (everywhere) common.push_back(name);
            }
            std::vector<std::vector<std::int64_t>> keys(members.size());
            for (std::size_t m = 0; m < members.size(); ++m) {
                for (std::string_view name : common) keys[m].push_back(allows[m][name]);
            }
            std::vector<std::size_t> order(members.size());
            for (std::size_t m = 0; m < order.size(); ++m) order[m] = m;
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
            std::uint32_t tie = 0;
            for (std::size_t i = 0; i < order.size(); ++i) {
                if (i > 0 && keys[order[i]] != keys[order[i - 1]]) ++tie;
                cands[members[order[i]]].tie_rank = tie;
            }
        }
    }
}

Id PoolContext::one_per_name_id(std::uint32_t name, char role, std::size_t i) {
    // "\x1f" cannot occur in a package name, so these never meet a real dependency.
    std::string text = names_[name].name;
    text += '\x1f';
    text += role;
    text += std::to_string(i);
    return pool_strn2id(pool_, text.data(), static_cast<unsigned>(text.size()), 1);
}

Id PoolContext::dep(std::string_view spec, bool negated) {
    Id text = pool_strn2id(pool_, spec.data(), static_cast<unsigned>(spec.size()), 1);
    return pool_rel2id(pool_, text, negated ? negate_flag_ : match_flag_, REL_NAMESPACE, 1);
}

bool PoolContext::is_spec_dep(Id d) const {
    if (!ISRELDEP(d)) return false;
    const Reldep* rd = GETRELDEP(pool_, d);
    return rd->flags == REL_NAMESPACE && (rd->evr == match_flag_ || rd->evr == negate_flag_);
}

std::string_view PoolContext::dep_text(Id d) const {
    if (!is_spec_dep(d)) return pool_dep2str(pool_, d);
    return pool_id2str(pool_, GETRELDEP(pool_, d)->name);
}

const ParsedDep& PoolContext::parsed(Id spec_string_id) {
    auto it = parsed_.find(spec_string_id);
    if (it != parsed_.end()) return it->second;
    ParsedDep pd;
    auto spec = MatchSpec::parse(pool_id2str(pool_, spec_string_id));
    if (spec) {
        pd.spec = std::move(*spec);
    } else {
        pd.error = spec.error().message + " (at character " + std::to_string(spec.error().offset + 1) + ")";
    }
    return parsed_.emplace(spec_string_id, std::move(pd)).first->second;
}

bool PoolContext::candidate_matches(const MatchSpec& spec, const Candidate& c, std::vector<std::int8_t>& verdicts,
                                    const NameEntry& entry) const {
    if (!spec.channel().empty() && spec.channel() != "*" && !channel_matches(spec.channel(), c.channel)) return false;
    if (!spec.subdir().empty() && (c.repo == nullptr || c.repo->subdir() != spec.subdir())) return false;
    if (!spec.version().is_any()) {
        std::int8_t& verdict = verdicts[c.version_string];
        if (verdict < 0) verdict = spec.version().contains(entry.versions[c.version_string]) ? 1 : 0;
        if (verdict == 0) return false;
    }
    if (!spec.build().is_any() && !spec.build().matches(c.build)) return false;
    if (spec.build_number() && !spec.build_number()->contains(c.build_number)) return false;
    if (!spec.extra().empty() && c.repo != nullptr) {
        std::optional<PackageRecord> record;
        for (const auto& [key, value] : spec.extra()) {
            const std::string* field = nullptr;
            if (key == "md5" || key == "sha256" || key == "fn" || key == "url" || key == "license" ||
                key == "license_family") {
                if (!record) record = c.repo->record(c.index);
                field = key == "md5"       ? &record->md5
                        : key == "sha256"  ? &record->sha256
                        : key == "fn"      ? &record->fn
                        : key == "url"     ? &record->url
                        : key == "license" ? &record->license
                                           : &record->license_family;
            }
            if (field && lower(*field) != lower(value)) return false;
        }
    }
    return true;
}

Id PoolContext::providers(Id name, Id evr) noexcept {
    try {
        if (evr != match_flag_ && evr != negate_flag_) return 0;
        const ParsedDep& pd = parsed(name);
        if (!pd.spec) return 0;
        const MatchSpec& spec = *pd.spec;
        const bool negated = evr == negate_flag_;
        std::vector<Id> found;
        auto scan = [&](const NameEntry& e) {
            std::vector<std::int8_t> verdicts(e.versions.size(), -1);
            for (Id p : e.solvables) {
                if (candidate_matches(spec, candidates_[static_cast<std::size_t>(p - first_solvable_)], verdicts, e) !=
                    negated) {
                    found.push_back(p);
                }
            }
        };
        if (spec.name().is_exact()) {
            if (const NameEntry* e = entry(spec.name().to_string())) scan(*e);
        } else {
            for (const NameEntry& e : names_) {
                if (spec.name().matches(e.name)) scan(e);
            }
        }
        if (found.empty()) return 0;
        std::sort(found.begin(), found.end());
        Queue q;
        queue_init(&q);
        for (Id p : found) queue_push(&q, p);
        Id offset = pool_queuetowhatprovides(pool_, &q);
        queue_free(&q);
        return offset;
    } catch (...) {
        if (!pending_) pending_ = std::current_exception();
        return 0;
    }
}

void PoolContext::rethrow_pending() {
    if (pending_) std::rethrow_exception(std::exchange(pending_, nullptr));
}

}  // namespace detail

namespace {

struct SolverDeleter {
    void operator()(Solver* s) const { solver_free(s); }
};

}  // namespace

std::optional<ChannelPriority> parse_channel_priority(std::string_view text) {
    if (text == "strict") return ChannelPriority::strict;
    if (text == "flexible") return ChannelPriority::flexible;
    if (text == "disabled") return ChannelPriority::disabled;
    return std::nullopt;
}

std::vector<PackageRecord> solve(const SolveRequest& request) {
    std::vector<MatchSpec> user_specs;
    for (const std::string& text : request.specs) {
        auto spec = MatchSpec::parse(text);
        if (!spec) {
            throw core::Error(core::ErrorCategory::invalid_input,
                              "spec '" + text + "': " + spec.error().message + " (at character " +
                                  std::to_string(spec.error().offset + 1) + ")");
        }
        user_specs.push_back(std::move(*spec));
    }
    if (user_specs.empty()) return {};

    detail::PoolContext ctx(request);
    ctx.load(user_specs);
    Pool* pool = ctx.pool();

    detail::QueueHolder job;
    std::vector<Id> user_deps;
    for (const std::string& text : request.specs) {
        Id d = ctx.dep(text, false);
        user_deps.push_back(d);
        queue_push2(&job.q, SOLVER_INSTALL | SOLVER_SOLVABLE_PROVIDES, d);
    }
    // libsolv turns an install job whose namespace dependency nobody provides into a no-op (its
    // "namespace supplements" hack), so a spec that matches nothing is reported here.
    std::vector<std::size_t> unmatched;
    for (std::size_t i = 0; i < user_deps.size(); ++i) {
        if (*pool_whatprovides_ptr(pool, user_deps[i]) == 0) unmatched.push_back(i);
    }
    ctx.rethrow_pending();
    if (!unmatched.empty()) throw SolveError(detail::explain_unmatched(ctx, unmatched));
    for (Id p : ctx.virtual_solvables()) queue_push2(&job.q, SOLVER_INSTALL | SOLVER_SOLVABLE, p);
    // libsolv's quadratic same-name rules off: the pool's ladder keeps one package per name.
    queue_push2(&job.q, SOLVER_MULTIVERSION | SOLVER_SOLVABLE_ALL, 0);
    for (const PackageRecord& wanted : request.preferred) {
        const detail::NameEntry* e = ctx.entry(wanted.name);
        if (!e) continue;
        for (Id p : e->solvables) {
            const detail::Candidate* c = ctx.candidate(p);
            if (!c || !c->repo || c->version != wanted.version || c->build != wanted.build) continue;
            if (!wanted.subdir.empty() && c->repo->subdir() != wanted.subdir) continue;
            if (!wanted.channel.empty() &&
                detail::strip_slash(c->repo->channel_url()) != detail::strip_slash(wanted.channel)) {
                continue;
            }
            queue_push2(&job.q, SOLVER_FAVOR | SOLVER_SOLVABLE, p);
        }
    }

    std::unique_ptr<Solver, SolverDeleter> solver(solver_create(pool));
    const int problems = solver_solve(solver.get(), &job.q);
    ctx.rethrow_pending();
    if (problems > 0) {
        std::string message = detail::explain_problems(ctx, solver.get(), user_deps);
        ctx.rethrow_pending();
        throw SolveError(message);
    }

    detail::QueueHolder decisions;
    solver_get_decisionqueue(solver.get(), &decisions.q);
    std::vector<PackageRecord> out;
    for (int i = 0; i < decisions.q.count; ++i) {
        Id p = decisions.q.elements[i];
        if (p <= 0) continue;
        const detail::Candidate* c = ctx.candidate(p);
        if (c && c->repo) out.push_back(c->repo->record(c->index));
    }
    std::sort(out.begin(), out.end(), [](const PackageRecord& a, const PackageRecord& b) {
        return std::tie(a.name, a.version, a.build, a.subdir) < std::tie(b.name, b.version, b.build, b.subdir);
    });
    return out;
}

std::vector<PackageRecord> sort_topologically(std::vector<PackageRecord> records) {
    std::sort(records.begin(), records.end(), [](const PackageRecord& a, const PackageRecord& b) {
        return std::tie(a.name, a.version, a.build) < std::tie(b.name, b.version, b.build);
    });
    const std::size_t n = records.size();
    std::map<std::string, std::vector<std::size_t>, std::less<>> by_name;
    for (std::size_t i = 0; i < n; ++i) by_name[records[i].name].push_back(i);
    std::vector<std::vector<std::size_t>> dependents(n);
    std::vector<std::size_t> unmet(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::set<std::size_t> deps;
        for (const std::string& d : records[i].depends) {
            auto it = by_name.find(detail::spec_name(d));
            if (it == by_name.end()) continue;
            for (std::size_t j : it->second) {
                if (j != i) deps.insert(j);
            }
        }
        unmet[i] = deps.size();
        for (std::size_t j : deps) dependents[j].push_back(i);
    }
    // Kahn's algorithm; the ready set is ordered by index, which is name order.
    std::set<std::size_t> ready;
    std::vector<bool> done(n, false);
    for (std::size_t i = 0; i < n; ++i) {
        if (unmet[i] == 0) ready.insert(i);
    }
    std::vector<PackageRecord> out;
    out.reserve(n);
    while (out.size() < n) {
        std::size_t next = 0;
        if (!ready.empty()) {
            next = *ready.begin();
            ready.erase(ready.begin());
        } else {
            // A cycle: take the package with the fewest unmet dependencies, ties by name.
            std::size_t best = n;
            for (std::size_t i = 0; i < n; ++i) {
                if (!done[i] && (best == n || unmet[i] < unmet[best])) best = i;
            }
            next = best;
        }
        done[next] = true;
        out.push_back(records[next]);
        for (std::size_t d : dependents[next]) {
            if (done[d] || unmet[d] == 0) continue;
            if (--unmet[d] == 0) ready.insert(d);
        }
    }
    return out;
}

}  // namespace ocibuild::conda
