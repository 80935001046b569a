// Why a solve failed, in the user's terms: libsolv's problem rules become sentences that name the
// user's specs, the packages and the spec strings as their channels wrote them.
#include "solv_includes.hpp"  // first: it renames a C++20 keyword

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "solver_pool.hpp"

namespace ocibuild::conda::detail {
namespace {

enum class Kind { missing, requires_dep, constrains };

struct GroupKey {
    Kind kind;
    std::string dep;     // spec text as written
    std::string source;  // package name
    bool operator<(const GroupKey& o) const {
        return std::tie(kind, dep, source) < std::tie(o.kind, o.dep, o.source);
    }
};

struct Group {
    std::set<Id> sources;
    std::set<Id> targets;
};

std::string quoted_list(const std::vector<std::string>& items) {
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += i + 1 == items.size() ? " and " : ", ";
        out += "'" + items[i] + "'";
    }
    return out;
}

class Explainer {
public:
    Explainer(PoolContext& ctx, Solver* solver) : ctx_(ctx), solver_(solver), pool_(ctx.pool()) {}

    /// "pytorch 2.4.0 (build cuda_0), 2.3.1 (build cuda_1)" / "foo 1.0, 0.9": newest first.
    std::string describe(const std::set<Id>& solvables, bool with_build) const {
        std::vector<const Candidate*> list;
        for (Id p : solvables) {
            if (const Candidate* c = ctx_.candidate(p)) list.push_back(c);
        }
        if (list.empty()) return "?";
        std::sort(list.begin(), list.end(), [](const Candidate* a, const Candidate* b) {
            return std::tie(b->version_rank, b->build_number, b->build) < std::tie(a->version_rank, a->build_number, a->build);
        });
        // One part per version, its builds listed when asked: "2.4 (builds cuda_0, cuda_1)".
        std::vector<std::pair<std::string, std::vector<std::string>>> versions;
        for (const Candidate* c : list) {
            auto it = std::find_if(versions.begin(), versions.end(), [&](const auto& v) { return v.first == c->version; });
            if (it == versions.end()) it = versions.insert(versions.end(), {std::string(c->version), {}});
            std::string build(c->build);
            if (c->repo && std::find(it->second.begin(), it->second.end(), build) == it->second.end()) {
                it->second.push_back(build);
            }
        }
        std::vector<std::string> parts;
        for (auto& [version, builds] : versions) {
            std::string part = version;
            if (with_build && !builds.empty()) {
                std::sort(builds.begin(), builds.end());
                part += builds.size() == 1 ? " (build " : " (builds ";
                for (std::size_t i = 0; i < builds.size(); ++i) part += (i ? ", " : "") + builds[i];
                part += ")";
            }
            parts.push_back(part);
        }
        std::string out = ctx_.names()[list.front()->name].name + " ";
        const std::size_t shown = std::min<std::size_t>(parts.size(), 4);
        for (std::size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + parts[i];
        if (parts.size() > shown) out += " and " + std::to_string(parts.size() - shown) + " more";
        return out;
    }

    const VirtualPackage* virtual_package(std::string_view name) const {
        for (const VirtualPackage& v : ctx_.request().virtual_packages.packages) {
            if (v.name == name) return &v;
        }
        return nullptr;
    }

    std::string provided_virtual(const VirtualPackage& v) const {
        std::string out = "the target provides " + v.name + " " + v.version;
        const auto& origin = ctx_.request().virtual_packages.origin;
        if (auto it = origin.find(v.name); it != origin.end() && !it->second.empty()) out += " (" + it->second + ")";
        return out;
    }

    std::string channel_name(std::uint32_t c) const {
        const SolveRequest& r = ctx_.request();
        if (c < r.channel_names.size()) return r.channel_names[c];
        if (c < r.channels.size() && !r.channels[c].empty()) return r.channels[c].front()->channel_url();
        return "channel " + std::to_string(c);
    }

    /// "; conda-forge has foo 2.1, but strict channel priority takes foo from bioconda only"
    std::string strict_hint(const MatchSpec& spec) const {
        if (!spec.name().is_exact()) return "";
        const std::string& name = spec.name().to_string();
        std::uint32_t kept = 0;
        if (!ctx_.strict_hid(name, &kept)) return "";
        const SolveRequest& r = ctx_.request();
        for (std::uint32_t c = 0; c < r.channels.size(); ++c) {
            if (c == kept) continue;
            for (const RepoData* repo : r.channels[c]) {
                for (std::uint32_t i : repo->by_name(name)) {
                    auto v = Version::parse(repo->version(i));
                    if (v && spec.matches(repo->name(i), *v, repo->build(i), repo->build_number(i))) {
                        return "; " + channel_name(c) + " has " + name + " " + std::string(repo->version(i)) +
                               ", but strict channel priority takes " + name + " from " + channel_name(kept) +
                               " only (use flexible priority, or ask for '" + channel_name(c) + "::" + name + "')";
                    }
                }
            }
        }
        return "";
    }

    /// " (python has 3.12.1, 3.11.5)": what the name offers, newest first.
    std::string available(std::string_view name) const {
        const NameEntry* e = ctx_.entry(name);
        if (!e || e->solvables.empty()) return "";
        std::set<Id> real;
        for (Id p : e->solvables) {
            if (const Candidate* c = ctx_.candidate(p); c && c->repo) real.insert(p);
        }
        if (real.empty()) return "";
        return " (" + describe(real, false).replace(0, e->name.size() + 1, e->name + " has ") + ")";
    }

    std::string missing_line(const std::set<Id>& sources, const std::string& dep_text, Id dep) {
        const ParsedDep& pd = ctx_.parsed(GETRELDEP(pool_, dep)->name);
        std::string name(spec_name(dep_text));
        const bool is_virtual = name.starts_with("__");
        std::string who = describe(sources, is_virtual);
        std::string verb = sources.size() > 1 ? " need " : " needs ";
        if (!pd.spec) return who + verb + "'" + dep_text + "', which does not parse: " + pd.error;
        if (is_virtual) {
            if (const VirtualPackage* v = virtual_package(name)) {
                return who + verb + dep_text + ", but " + provided_virtual(*v);
            }
            std::string line = who + verb + dep_text + ", but the target provides no " + name;
            const auto& reasons = ctx_.request().virtual_packages.absent_reason;
            if (auto it = reasons.find(name); it != reasons.end() && !it->second.empty()) line += ": " + it->second;
            return line;
        }
        return who + verb + dep_text + ", which no channel provides" + available(name) + strict_hint(*pd.spec);
    }

    std::string constrains_line(const std::set<Id>& sources, const std::set<Id>& targets, const std::string& dep_text) {
        std::string name(spec_name(dep_text));
        if (name.starts_with("__")) {
            if (const VirtualPackage* v = virtual_package(name)) {
                return describe(sources, true) + (sources.size() > 1 ? " need " : " needs ") + dep_text + ", but " +
                       provided_virtual(*v);
            }
        }
        return describe(sources, false) + (sources.size() > 1 ? " allow only " : " allows only ") + dep_text +
               " (constrains), which rules out " + describe(targets, false);
    }

    std::string job_missing_line(const std::string& spec_text) {
        auto spec = MatchSpec::parse(spec_text);
        std::string line = "nothing matches '" + spec_text + "'";
        if (!spec) return line;
        const SolveRequest& r = ctx_.request();
        if (!spec->channel().empty() && spec->channel() != "*") {
            bool known = false;
            for (std::uint32_t c = 0; c < r.channels.size() && !known; ++c) {
                known = strip_slash(channel_name(c)) == strip_slash(spec->channel());
                for (const RepoData* repo : r.channels[c]) {
                    known = known || strip_slash(repo->channel_url()).ends_with(strip_slash(spec->channel()));
                }
            }
            if (!known) {
                std::string names;
                for (std::uint32_t c = 0; c < r.channels.size(); ++c) names += (c ? ", " : "") + channel_name(c);
                return line + ": channel '" + spec->channel() + "' is not among the channels (" + names + ")";
            }
        }
        if (spec->name().is_exact()) {
            const std::string& name = spec->name().to_string();
            if (name.starts_with("__")) {
                if (const VirtualPackage* v = virtual_package(name)) return line + ": " + provided_virtual(*v);
                const auto& reasons = r.virtual_packages.absent_reason;
                line += ": the target provides no " + name;
                if (auto it = reasons.find(name); it != reasons.end() && !it->second.empty()) line += " (" + it->second + ")";
                return line;
            }
            line += available(name) + strict_hint(*spec);
        }
        return line;
    }

    std::string problem(Id problem_id, const std::vector<Id>& user_deps) {
        QueueHolder rules;
        solver_findallproblemrules(solver_, problem_id, &rules.q);
        std::set<std::size_t> specs;
        // Reasons, most telling first: what nothing provides (the usual root cause), then
        // constraints, then plain dependencies (often many, most of them bystanders).
        std::map<std::string, int> lines;
        auto add = [&lines](std::string line, int rank) {
            auto [it, fresh] = lines.emplace(std::move(line), rank);
            if (!fresh) it->second = std::min(it->second, rank);
        };
        std::map<GroupKey, Group> groups;
        std::map<GroupKey, Id> group_dep;
        const SolveRequest& r = ctx_.request();
        for (int i = 0; i < rules.q.count; ++i) {
            Id rid = rules.q.elements[i];
            Id source = 0;
            Id target = 0;
            Id dep = 0;
            SolverRuleinfo type = solver_ruleinfo(solver_, rid, &source, &target, &dep);
            if ((type & SOLVER_RULE_TYPEMASK) == SOLVER_RULE_JOB) {
                Id what = 0;
                Id how = solver_rule2job(solver_, rid, &what);
                // Only the user's specs: virtual packages are installed by SOLVER_SOLVABLE jobs.
                if ((how & SOLVER_JOBMASK) != SOLVER_INSTALL || (how & SOLVER_SELECTMASK) != SOLVER_SOLVABLE_PROVIDES) {
                    continue;
                }
                for (std::size_t s = 0; s < user_deps.size(); ++s) {
                    if (user_deps[s] != what) continue;
                    specs.insert(s);
                    if (type == SOLVER_RULE_JOB_NOTHING_PROVIDES_DEP) add(job_missing_line(r.specs[s]), 0);
                }
                continue;
            }
            const Candidate* src = ctx_.candidate(source);
            switch (type) {
                case SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP:
                case SOLVER_RULE_PKG_REQUIRES:
                case SOLVER_RULE_PKG_CONFLICTS: {
                    if (!src || !ctx_.is_spec_dep(dep)) break;
                    Kind kind = type == SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP ? Kind::missing
                                : type == SOLVER_RULE_PKG_REQUIRES           ? Kind::requires_dep
                                                                             : Kind::constrains;
                    GroupKey key{kind, std::string(ctx_.dep_text(dep)), ctx_.names()[src->name].name};
                    Group& g = groups[key];
                    g.sources.insert(source);
                    if (target > 0) g.targets.insert(target);
                    group_dep[key] = dep;
                    break;
                }
                case SOLVER_RULE_PKG_SAME_NAME:
                case SOLVER_RULE_UPDATE:
                case SOLVER_RULE_FEATURE:
                case SOLVER_RULE_CHOICE:
                case SOLVER_RULE_BEST:
                    break;  // one version per name, and the installed virtual packages: implied by the rest
                default:
                    add(solver_ruleinfo2str(solver_, type, source, target, dep), 1);
            }
        }
        for (const auto& [key, g] : groups) {
            switch (key.kind) {
                case Kind::missing:
                    add(missing_line(g.sources, key.dep, group_dep[key]), 0);
                    break;
                case Kind::requires_dep:
                    // A dependency on a virtual package is as telling as a missing one.
                    add(describe(g.sources, false) + (g.sources.size() > 1 ? " need " : " needs ") + key.dep,
                        key.dep.starts_with("__") ? 0 : 2);
                    break;
                case Kind::constrains:
                    add(constrains_line(g.sources, g.targets, key.dep), 1);
                    break;
            }
        }
        std::vector<std::string> spec_texts;
        for (std::size_t s : specs) spec_texts.push_back(r.specs[s]);
        std::string out = spec_texts.empty()      ? std::string("the request cannot be satisfied:")
                          : spec_texts.size() == 1 ? "cannot install " + quoted_list(spec_texts) + ":"
                                                   : "cannot install " + quoted_list(spec_texts) + " together:";
        if (lines.empty()) add(solver_problem2str(solver_, problem_id), 0);
        std::vector<std::pair<int, std::string>> ordered;
        for (auto& [line, rank] : lines) ordered.emplace_back(rank, line);
        std::sort(ordered.begin(), ordered.end());
        // Every root cause is shown; plain dependency lines only up to a screenful.
        constexpr std::size_t max_dependency_lines = 12;
        std::size_t shown_dependencies = 0;
        std::size_t hidden = 0;
        for (const auto& [rank, line] : ordered) {
            if (rank >= 2 && shown_dependencies++ >= max_dependency_lines) {
                ++hidden;
                continue;
            }
            out += "\n  " + line;
        }
        if (hidden > 0) out += "\n  (and " + std::to_string(hidden) + " more dependency lines like these)";
        return out;
    }

private:
    PoolContext& ctx_;
    Solver* solver_;
    Pool* pool_;
};

}  // namespace

std::string explain_unmatched(PoolContext& ctx, const std::vector<std::size_t>& specs) {
    Explainer explainer(ctx, nullptr);
    std::string out;
    for (std::size_t s : specs) {
        const std::string& text = ctx.request().specs[s];
        out += (out.empty() ? "" : "\n") + ("cannot install '" + text + "':\n  ") + explainer.job_missing_line(text);
    }
    return out;
}

std::string explain_problems(PoolContext& ctx, Solver* solver, const std::vector<Id>& user_deps) {
    Explainer explainer(ctx, solver);
    std::vector<std::string> blocks;
    const unsigned count = solver_problem_count(solver);
    for (unsigned i = 1; i <= count; ++i) {
        std::string block = explainer.problem(static_cast<Id>(i), user_deps);
        if (std::find(blocks.begin(), blocks.end(), block) == blocks.end()) blocks.push_back(block);
    }
    std::sort(blocks.begin(), blocks.end());
    std::string out;
    for (const std::string& b : blocks) out += (out.empty() ? "" : "\n") + b;
    return out;
}

}  // namespace ocibuild::conda::detail
