#include "task_pool.hpp"

#include <algorithm>

namespace ocibuild::conda::detail {

TaskPool::TaskPool(unsigned threads) : capacity_(4 * static_cast<std::size_t>(std::max(threads, 1u))) {
    if (threads <= 1) return;
    workers_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

TaskPool::~TaskPool() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
        queue_.clear();
    }
    has_work_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void TaskPool::submit(std::function<void()> task) {
    const std::size_t index = submitted_++;
    if (workers_.empty()) {
        if (!failures_.empty()) return;
        try {
            task();
        } catch (...) {
            failures_.emplace_back(index, std::current_exception());
        }
        return;
    }
    std::unique_lock lock(mutex_);
    has_room_.wait(lock, [&] { return queue_.size() < capacity_; });
    if (!failures_.empty()) return;  // failing anyway: do no more work
    queue_.emplace_back(index, std::move(task));
    lock.unlock();
    has_work_.notify_one();
}

void TaskPool::wait() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
    if (failures_.empty()) return;
    const auto first = std::min_element(failures_.begin(), failures_.end(),
                                        [](const auto& a, const auto& b) { return a.first < b.first; });
    const std::exception_ptr error = first->second;
    failures_.clear();
    std::rethrow_exception(error);
}

void TaskPool::work() {
    std::unique_lock lock(mutex_);
    for (;;) {
        has_work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping
        auto [index, task] = std::move(queue_.front());
        queue_.pop_front();
        ++running_;
        const bool skip = !failures_.empty();
        lock.unlock();
        has_room_.notify_one();
        std::exception_ptr error;
        if (!skip) {
            try {
                task();
            } catch (...) {
                error = std::current_exception();
            }
        }
        task = nullptr;  // release what it holds (file descriptors) before reporting idle
        lock.lock();
        if (error) failures_.emplace_back(index, error);
        --running_;
        if (queue_.empty() && running_ == 0) idle_.notify_all();
    }
}

}  // namespace ocibuild::conda::detail
