// Many videos at once: parallelism across videos with one decoder thread each beats several
// threads on one decoder when there are more videos than cores.
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "video/sampling.h"

namespace lvrl::video {

std::vector<BatchResult> sample_many(const std::vector<std::string>& paths, const SamplingPlan& plan,
                                     const OutputSize& size, int parallel, SampleOptions options) {
  std::vector<BatchResult> results(paths.size());
  if (options.open.threads <= 0) options.open.threads = 1;
  std::atomic<size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;  // the first error that is no file's fault (no memory, a bug): rethrown
  auto worker = [&] {
    for (size_t i = next++; i < paths.size(); i = next++) {
      results[i].path = paths[i];
      try {
        results[i].sampled = sample_frames(paths[i], plan, size, options);
        results[i].ok = true;
      } catch (const Error& e) {  // a bad file (InputError) or FFmpeg's refusal (LibraryError)
        results[i].error = e.what();
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = paths.size();  // the others stop after their current file
      }
    }
  };
  size_t workers = std::min<size_t>(std::max(parallel, 1), paths.size());
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(worker);
  for (std::thread& thread : threads) thread.join();
  if (failure) std::rethrow_exception(failure);
  return results;
}

}  // namespace lvrl::video
