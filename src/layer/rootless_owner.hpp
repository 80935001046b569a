#pragma once
// Private to the layer module: the user.rootlesscontainers xattr, which keeps a file's true owner
// when a rootless process cannot chown (umoci's rootless mode, rootlesskit, buildah). Its value is
// the protobuf message of github.com/rootless-containers/proto:
//
//   message Resource { uint32 uid = 1; uint32 gid = 2; }
//
// proto3 encoding: a field equal to 0 is omitted (so owner 0:0 is the empty value, and umoci
// removes the xattr instead), and 4294967295 (NoopID) means "keep the file's own id".
// Used by apply.cpp (writing it, recorded_owner) and diff.cpp (reading owners back).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ocibuild/layer/apply.hpp"

namespace ocibuild::layer::detail {

inline constexpr const char* rootless_xattr = "user.rootlesscontainers";
/// "Leave this id as the file has it" in a Resource message.
inline constexpr std::uint32_t rootless_noop_id = 0xffffffffu;

/// Decodes a Resource message. Unknown fields are skipped, as protobuf readers do; an absent field
/// is 0. nullopt when the bytes are not a well-formed message (truncated varint or field, wire
/// types 3/4/6/7). NoopID values are returned as they are.
[[nodiscard]] std::optional<RecordedOwner> decode_rootless_owner(std::string_view bytes);

/// Encodes a Resource message as Go's proto.Marshal does (uid field, then gid field, zeros
/// omitted): 0:0 gives an empty string.
[[nodiscard]] std::string encode_rootless_owner(RecordedOwner owner);

/// The owner `st_uid`/`st_gid` replaced by the decoded `xattr_value` (NoopID fields keep the stat
/// value). Throws core::Error(invalid_input) naming `path` when the value is malformed.
[[nodiscard]] RecordedOwner effective_owner(std::uint32_t st_uid, std::uint32_t st_gid,
                                            const std::optional<std::string>& xattr_value, std::string_view path);

}  // namespace ocibuild::layer::detail
