#pragma once
// One alias for "a value or a precise reason why not" (GCC 12 lacks std::expected in C++20).
#include <cstddef>
#include <string>

#include <tl/expected.hpp>

namespace ocibuild {

/// Why a parse failed: a message and the 0-based offset of the offending character.
struct ParseError {
    std::string message;
    std::size_t offset = 0;
};

template <class T, class E = ParseError>
using Result = tl::expected<T, E>;

template <class E>
[[nodiscard]] inline tl::unexpected<E> fail(E e) {
    return tl::unexpected<E>(std::move(e));
}

[[nodiscard]] inline tl::unexpected<ParseError> parse_fail(std::string message, std::size_t offset = 0) {
    return tl::unexpected<ParseError>(ParseError{std::move(message), offset});
}

}  // namespace ocibuild
