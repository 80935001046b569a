// Resolving the step's user against the image's passwd and group files.
#include "user.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

namespace ocibuild::sandbox::user {

namespace {

std::optional<std::uint32_t> parse_id(std::string_view s) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// Splits one passwd/group line into its ':' fields.
std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    for (;;) {
        auto c = line.find(':');
        out.push_back(line.substr(0, c));
        if (c == std::string_view::npos) return out;
        line.remove_prefix(c + 1);
    }
}

// Calls fn(fields) for each well-formed line (at least `min_fields` fields) until fn returns true.
template <class Fn>
void each_entry(std::string_view text, std::size_t min_fields, Fn&& fn) {
    while (!text.empty()) {
        auto eol = text.find('\n');
        auto line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        if (line.empty() || line.front() == '#') continue;
        auto f = fields(line);
        if (f.size() >= min_fields && fn(f)) return;
    }
}

struct PasswdEntry {
    std::string name;
    std::uint32_t uid = 0, gid = 0;
    std::string home;
};

std::optional<PasswdEntry> find_passwd(std::string_view passwd, std::string_view name,
                                       std::optional<std::uint32_t> uid) {
    std::optional<PasswdEntry> found;
    each_entry(passwd, 7, [&](const std::vector<std::string_view>& f) {
        auto u = parse_id(f[2]);
        auto g = parse_id(f[3]);
        if (!u || !g) return false;
        if ((uid && *u == *uid) || (!uid && f[0] == name)) {
            found = PasswdEntry{std::string(f[0]), *u, *g, std::string(f[5])};
            return true;
        }
        return false;
    });
    return found;
}

std::optional<std::uint32_t> find_group(std::string_view group, std::string_view name) {
    std::optional<std::uint32_t> gid;
    each_entry(group, 3, [&](const std::vector<std::string_view>& f) {
        if (f[0] != name) return false;
        gid = parse_id(f[2]);
        return gid.has_value();
    });
    return gid;
}

std::vector<std::uint32_t> member_groups(std::string_view group, std::string_view user) {
    std::vector<std::uint32_t> gids;
    if (user.empty()) return gids;
    each_entry(group, 4, [&](const std::vector<std::string_view>& f) {
        auto gid = parse_id(f[2]);
        std::string_view members = f[3];
        while (gid && !members.empty()) {
            auto c = members.find(',');
            if (members.substr(0, c) == user) {
                gids.push_back(*gid);
                break;
            }
            members = c == std::string_view::npos ? std::string_view{} : members.substr(c + 1);
        }
        return false;
    });
    return gids;
}

}  // namespace

Result<Credentials, std::string> resolve(std::string_view spec, std::string_view passwd, std::string_view group) {
    std::string_view user_part = spec.substr(0, spec.find(':'));
    std::optional<std::string_view> group_part;
    if (auto c = spec.find(':'); c != std::string_view::npos) group_part = spec.substr(c + 1);
    if (user_part.empty()) user_part = "0";
    if (group_part && group_part->empty())
        return tl::unexpected<std::string>("user \"" + std::string(spec) + "\": empty group");

    Credentials creds;
    std::string name;
    auto uid = parse_id(user_part);
    auto entry = find_passwd(passwd, user_part, uid);
    if (entry) {
        creds.uid = entry->uid;
        creds.gid = entry->gid;
        creds.home = entry->home.empty() ? "/" : entry->home;
        name = entry->name;
    } else if (uid) {
        creds.uid = *uid;  // a bare number needs no passwd entry; its group is then 0
    } else {
        return tl::unexpected<std::string>("user \"" + std::string(user_part) + "\" not found in /etc/passwd");
    }

    if (group_part) {
        if (auto gid = parse_id(*group_part)) {
            creds.gid = *gid;
        } else if (auto named = find_group(group, *group_part)) {
            creds.gid = *named;
        } else {
            return tl::unexpected<std::string>("group \"" + std::string(*group_part) + "\" not found in /etc/group");
        }
    }

    creds.groups.push_back(creds.gid);
    for (auto g : member_groups(group, name))
        if (std::find(creds.groups.begin(), creds.groups.end(), g) == creds.groups.end()) creds.groups.push_back(g);
    return creds;
}

}  // namespace ocibuild::sandbox::user
