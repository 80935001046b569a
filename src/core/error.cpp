#include "ocibuild/core/error.hpp"

#include <cerrno>
#include <cstring>

namespace ocibuild::core {

std::string_view to_string(ErrorCategory category) {
    switch (category) {
        case ErrorCategory::not_found: return "not found";
        case ErrorCategory::already_exists: return "already exists";
        case ErrorCategory::invalid_input: return "invalid input";
        case ErrorCategory::integrity: return "integrity";
        case ErrorCategory::unavailable: return "unavailable";
        case ErrorCategory::unauthorized: return "unauthorized";
        case ErrorCategory::unsupported: return "unsupported";
        case ErrorCategory::internal: return "internal";
    }
    return "internal";
}

Error::Error(ErrorCategory category, std::string message)
    : category_(category), message_(std::move(message)) {
    render();
}

Error& Error::with_context(std::string frame) {
    context_.insert(context_.begin(), std::move(frame));
    render();
    return *this;
}

void Error::render() {
    rendered_.clear();
    for (const auto& frame : context_) {
        rendered_ += frame;
        rendered_ += ": ";
    }
    rendered_ += message_;
}

namespace {
ErrorCategory category_of(int err) {
    switch (err) {
        case ENOENT:
        case ENOTDIR: return ErrorCategory::not_found;
        case EEXIST:
        case ENOTEMPTY: return ErrorCategory::already_exists;
        case EACCES:
        case EPERM: return ErrorCategory::unauthorized;
        case EINVAL:
        case ENAMETOOLONG:
        case ELOOP:
        case EISDIR: return ErrorCategory::invalid_input;
        case ENOSYS:
        case EOPNOTSUPP: return ErrorCategory::unsupported;
        case ENOSPC:
        case EDQUOT:
        case EAGAIN:
        case EBUSY:
        case EIO: return ErrorCategory::unavailable;
        default: return ErrorCategory::internal;
    }
}
}  // namespace

void throw_errno(int err, std::string what) {
    throw Error(category_of(err), what + ": " + std::strerror(err));
}

void throw_errno(std::string what) { throw_errno(errno, std::move(what)); }

}  // namespace ocibuild::core
