// A small persistent thread pool shared by the interpreter (native_kernel.cc) and the mutation kernel
// (mutation_kernel.cc): one pool per process (an inline function's static), so the two never oversubscribe
// the cores.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace azjax_native {

// A small persistent thread pool: parallel_for over [0, n) with dynamic scheduling.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static destructors
    return *pool;
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(i) for i in [0, n); returns false (running nothing) if another call holds the pool.
  bool try_parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> g(m_);
      fn_ = &fn;
      n_ = n;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work(0);
    std::unique_lock<std::mutex> g(m_);
    done_cv_.wait(g, [&] { return pending_ == 0; });
    fn_ = nullptr;
    return true;
  }

 private:
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("AZJAX_NATIVE_THREADS")) n = std::atoi(env);
    n = std::max(1, std::min(n, 256));
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t] { loop(t); });
    for (auto& w : workers_) w.detach();
  }
  void work(int thread) {
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= n_) break;
      (*fn_)(i, thread);
    }
  }
  void loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> g(m_);
        cv_.wait(g, [&] { return generation_ != seen; });
        seen = generation_;
      }
      work(thread);
      {
        std::lock_guard<std::mutex> g(m_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  std::vector<std::thread> workers_;
  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  int pending_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace azjax_native
