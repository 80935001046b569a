#pragma once
// Private to the conda module: a fixed set of worker threads running independent tasks, with a
// bounded queue (submit blocks when it is full, so a producer holding file descriptors for each
// task never runs far ahead). Failures are collected and the first in submission order is
// rethrown by wait(), so the error a user sees does not depend on scheduling; after a failure the
// tasks not yet started are dropped.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace ocibuild::conda::detail {

class TaskPool {
public:
    /// `threads` ≤ 1: tasks run inside submit().
    explicit TaskPool(unsigned threads);
    ~TaskPool();  // drops what has not started, waits for what runs; never throws
    TaskPool(const TaskPool&) = delete;
    TaskPool& operator=(const TaskPool&) = delete;

    void submit(std::function<void()> task);
    /// Waits for every submitted task; rethrows the first failure (in submission order).
    void wait();

private:
    void work();

    std::mutex mutex_;
    std::condition_variable has_work_;
    std::condition_variable has_room_;
    std::condition_variable idle_;
    std::deque<std::pair<std::size_t, std::function<void()>>> queue_;
    std::size_t capacity_;
    std::size_t submitted_ = 0;
    std::size_t running_ = 0;
    bool stopping_ = false;
    std::vector<std::pair<std::size_t, std::exception_ptr>> failures_;
    std::vector<std::thread> workers_;
};

}  // namespace ocibuild::conda::detail
