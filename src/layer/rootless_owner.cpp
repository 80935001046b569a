#include "rootless_owner.hpp"

#include "ocibuild/core/error.hpp"

namespace ocibuild::layer::detail {
namespace {

/// Reads a base-128 varint at `pos` (at most 10 bytes, as protobuf allows); nullopt if truncated.
std::optional<std::uint64_t> read_varint(std::string_view bytes, std::size_t& pos) {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 70 && pos < bytes.size(); shift += 7) {
        const auto byte = static_cast<unsigned char>(bytes[pos++]);
        if (shift < 64) value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return value;
    }
    return std::nullopt;
}

void write_varint(std::string& out, std::uint64_t value) {
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7f) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}

}  // namespace

std::optional<RecordedOwner> decode_rootless_owner(std::string_view bytes) {
    RecordedOwner owner;
    std::size_t pos = 0;
    while (pos < bytes.size()) {
        const auto key = read_varint(bytes, pos);
        if (!key) return std::nullopt;
        const std::uint64_t field = *key >> 3;
        switch (*key & 7) {
            case 0: {  // varint
                const auto value = read_varint(bytes, pos);
                if (!value) return std::nullopt;
                // uint32 fields keep the low 32 bits of a wider varint, as protobuf parsers do.
                if (field == 1) owner.uid = static_cast<std::uint32_t>(*value);
                if (field == 2) owner.gid = static_cast<std::uint32_t>(*value);
                break;
            }
            case 1:  // 64-bit
                if (bytes.size() - pos < 8) return std::nullopt;
                pos += 8;
                break;
            case 2: {  // length-delimited
                const auto length = read_varint(bytes, pos);
                if (!length || *length > bytes.size() - pos) return std::nullopt;
                pos += static_cast<std::size_t>(*length);
                break;
            }
            case 5:  // 32-bit
                if (bytes.size() - pos < 4) return std::nullopt;
                pos += 4;
                break;
            default: return std::nullopt;  // groups (3, 4) are not proto3; 6 and 7 do not exist
        }
    }
    return owner;
}

std::string encode_rootless_owner(RecordedOwner owner) {
    std::string out;
    if (owner.uid != 0) {
        out.push_back('\x08');  // field 1, varint
        write_varint(out, owner.uid);
    }
    if (owner.gid != 0) {
        out.push_back('\x10');  // field 2, varint
        write_varint(out, owner.gid);
    }
    return out;
}

RecordedOwner effective_owner(std::uint32_t st_uid, std::uint32_t st_gid, const std::optional<std::string>& xattr_value,
                              std::string_view path) {
    if (!xattr_value) return {st_uid, st_gid};
    const auto decoded = decode_rootless_owner(*xattr_value);
    if (!decoded) {
        throw core::Error(core::ErrorCategory::invalid_input,
                          "malformed " + std::string(rootless_xattr) + " xattr on " + std::string(path));
    }
    return {decoded->uid == rootless_noop_id ? st_uid : decoded->uid,
            decoded->gid == rootless_noop_id ? st_gid : decoded->gid};
}

}  // namespace ocibuild::layer::detail
