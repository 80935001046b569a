#pragma once
// One exception family for the whole program: a short category list that callers may branch on
// (retries, exit codes) plus context frames added while the error unwinds. Never parse messages.
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ocibuild::core {

enum class ErrorCategory {
    not_found,
    already_exists,
    invalid_input,
    integrity,
    unavailable,
    unauthorized,
    unsupported,
    internal,
};

[[nodiscard]] std::string_view to_string(ErrorCategory category);

class Error : public std::exception {
public:
    Error(ErrorCategory category, std::string message);

    [[nodiscard]] ErrorCategory category() const noexcept { return category_; }
    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    /// Context frames, outermost first ("building recipe.toml", "step 2", ...).
    [[nodiscard]] const std::vector<std::string>& context() const noexcept { return context_; }

    /// Adds an outer frame; returns *this so `throw e.with_context(...)` reads naturally.
    Error& with_context(std::string frame);

    /// "frame: frame: message", what a user sees after "error: ".
    [[nodiscard]] const char* what() const noexcept override { return rendered_.c_str(); }

private:
    void render();
    ErrorCategory category_;
    std::string message_;
    std::vector<std::string> context_;
    std::string rendered_;
};

/// Throws an Error for the current errno: "<what>: <strerror>", categorised (ENOENT → not_found, ...).
[[noreturn]] void throw_errno(std::string what);
[[noreturn]] void throw_errno(int err, std::string what);

/// Runs fn(); an Error escaping it gains `frame` as outer context.
template <class Fn>
decltype(auto) with_context(std::string frame, Fn&& fn) {
    try {
        return std::forward<Fn>(fn)();
    } catch (Error& e) {
        e.with_context(std::move(frame));
        throw;
    }
}

}  // namespace ocibuild::core
