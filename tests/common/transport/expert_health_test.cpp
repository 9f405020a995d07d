// ExpertHealth without processes: probes are functions. Invariants: a worker is up until
// marked down; the prober brings it back only once its probe succeeds; WaitUp returns as soon
// as one of its workers is up, and -1 at the deadline; nothing is probed while all are up.
#include "common/transport/expert_health.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace dsv3 {
namespace {

using std::chrono::milliseconds;

TEST(ExpertHealth, DownUntilItsProbeSucceedsThenBack) {
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{false};
  std::vector<ExpertHealth::Probe> probes = {
      [&](Deadline) { return Status(); },
      [&](Deadline) {
        ++calls;
        return healthy ? Status() : absl::UnavailableError("connection refused");
      }};
  ExpertHealth h(probes, {"a", "b"}, milliseconds(10), milliseconds(100));
  EXPECT_TRUE(h.up(0));
  EXPECT_TRUE(h.up(1));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(calls, 0) << "nothing is probed while every worker is up";
  h.MarkDown(1, absl::UnavailableError("lost"));
  EXPECT_FALSE(h.up(1));
  EXPECT_EQ(h.last_failure(1).message(), "lost");
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(h.up(1)) << "a failing probe keeps it down";
  EXPECT_GT(calls, 2);
  EXPECT_EQ(h.WaitUp({1}, std::chrono::steady_clock::now() + milliseconds(50)), -1);
  healthy = true;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(h.WaitUp({1}, t0 + milliseconds(2000)), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000));
  EXPECT_TRUE(h.up(1));
  EXPECT_TRUE(h.last_failure(1).ok());
  EXPECT_EQ(h.recoveries(), 1u);
  const auto snap = h.Snapshot();
  EXPECT_TRUE(snap[0] && snap[1]);
}

TEST(ExpertHealth, WaitUpReturnsAnyLiveWorkerAndTheDestructorStopsAHungProbe) {
  std::vector<ExpertHealth::Probe> probes = {
      [](Deadline d) {  // a hung worker: the probe runs to its deadline
        std::this_thread::sleep_until(d);
        return absl::DeadlineExceededError("no answer");
      },
      [](Deadline) { return Status(); }};
  auto h = std::make_unique<ExpertHealth>(probes, std::vector<std::string>{"hung", "ok"}, milliseconds(10),
                                          milliseconds(200));
  h->MarkDown(0, absl::DeadlineExceededError("silent"));
  EXPECT_EQ(h->WaitUp({0, 1}, std::chrono::steady_clock::now() + milliseconds(10)), 1) << "1 was never down";
  EXPECT_EQ(h->WaitUp({0}, std::chrono::steady_clock::now() + milliseconds(100)), -1);
  const auto t0 = std::chrono::steady_clock::now();
  h.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1000)) << "destruction waits at most one probe";
}

}  // namespace
}  // namespace dsv3
