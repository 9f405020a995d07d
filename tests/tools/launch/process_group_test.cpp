// ProcessGroup supervision: a dead child is restarted where it was (pid file rewritten), a
// clean exit is a restart rather than a crash, a crash loop is given up on after
// max_crashes in the window while the others keep running. Children are /bin/sh scripts.
#include "tools/launch/process_group.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tools/launch/cluster_spec.h"

namespace dsv3 {
namespace {

std::string TempDir(const std::string& tag) {
  const std::string d = std::filesystem::temp_directory_path().string() + "/dsv3-pg-" + tag + "-" + std::to_string(getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

pid_t ReadPid(const std::string& path) {
  std::ifstream f(path);
  long pid = -1;
  f >> pid;
  return static_cast<pid_t>(pid);
}

RestartPolicy Fast() {
  RestartPolicy p;
  p.first_delay = std::chrono::milliseconds(20);
  p.max_delay = std::chrono::milliseconds(80);
  p.max_crashes = 4;
  p.window = std::chrono::seconds(30);
  p.ready_timeout = std::chrono::seconds(10);
  return p;
}

// Supervise until `done` or the timeout; the lines it logged.
std::vector<std::string> SuperviseUntil(ProcessGroup& g, const std::function<bool(const std::vector<std::string>&)>& done,
                                        std::chrono::seconds timeout = std::chrono::seconds(15)) {
  std::vector<std::string> lines;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done(lines) && std::chrono::steady_clock::now() < end) {
    g.Supervise([&](const std::string& l) { lines.push_back(l); });
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return lines;
}

bool Has(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(ProcessGroup, KilledChildIsRestartedAndItsPidFileRewritten) {
  const std::string dir = TempDir("kill");
  ProcessGroup g(dir, Fast());
  auto addr = g.Start("worker", {"/bin/sh", "-c", "echo 'listening on 127.0.0.1:1234'; exec sleep 60"}, "listening on ",
                      std::chrono::seconds(10));
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(*addr, "127.0.0.1:1234");
  auto other = g.Start("other", {"/bin/sh", "-c", "echo 'listening on x'; exec sleep 60"}, "listening on ",
                       std::chrono::seconds(10));
  ASSERT_TRUE(other.ok());
  const pid_t first = ReadPid(g.PidPath("worker"));
  const pid_t other_pid = ReadPid(g.PidPath("other"));
  ASSERT_GT(first, 1);
  kill(first, SIGKILL);
  auto lines = SuperviseUntil(g, [](const auto& l) { return Has(l, "worker restarted on"); });
  ASSERT_TRUE(Has(lines, "worker exited (signal 9")) << ::testing::PrintToString(lines);
  ASSERT_TRUE(Has(lines, "worker restarted on 127.0.0.1:1234")) << ::testing::PrintToString(lines);
  const pid_t second = ReadPid(g.PidPath("worker"));
  EXPECT_GT(second, 1);
  EXPECT_NE(second, first);
  EXPECT_EQ(kill(second, 0), 0) << "the restarted child runs";
  EXPECT_EQ(ReadPid(g.PidPath("other")), other_pid) << "the others were left alone";
  EXPECT_EQ(kill(other_pid, 0), 0);
  g.StopAll(std::chrono::seconds(2));
  std::filesystem::remove_all(dir);
}

TEST(ProcessGroup, RestartsUseTheRestartCommandLine) {
  const std::string dir = TempDir("argv");
  ProcessGroup g(dir, Fast());
  ASSERT_TRUE(g.Start("w", {"/bin/sh", "-c", "echo 'listening on first'; exec sleep 60"}, "listening on ",
                      std::chrono::seconds(10))
                  .ok());
  g.SetRestartArgv("w", {"/bin/sh", "-c", "echo 'listening on second'; exec sleep 60"});
  kill(ReadPid(g.PidPath("w")), SIGTERM);
  auto lines = SuperviseUntil(g, [](const auto& l) { return Has(l, "restarted on"); });
  EXPECT_TRUE(Has(lines, "w restarted on second")) << ::testing::PrintToString(lines);
  g.StopAll(std::chrono::seconds(2));
  std::filesystem::remove_all(dir);
}

TEST(ProcessGroup, CrashLoopIsGivenUpOnAndTheOthersKeepRunning) {
  const std::string dir = TempDir("loop");
  ProcessGroup g(dir, Fast());
  // Ready, then crashes a moment later, every time.
  ASSERT_TRUE(g.Start("crashy", {"/bin/sh", "-c", "echo 'listening on c'; sleep 0.05; exit 3"}, "listening on ",
                      std::chrono::seconds(10))
                  .ok());
  ASSERT_TRUE(g.Start("steady", {"/bin/sh", "-c", "echo 'listening on s'; exec sleep 60"}, "listening on ",
                      std::chrono::seconds(10))
                  .ok());
  const pid_t steady = ReadPid(g.PidPath("steady"));
  auto lines = SuperviseUntil(g, [](const auto& l) { return Has(l, "giving up"); });
  ASSERT_TRUE(Has(lines, "crashy exited (status 3); giving up on it after 4 crashes")) << ::testing::PrintToString(lines);
  int restarts = 0;
  for (const auto& l : lines) restarts += l.find("crashy restarted on") != std::string::npos;
  EXPECT_EQ(restarts, 3);
  // Backoff doubles: 20, 40, 80 ms (capped).
  EXPECT_TRUE(Has(lines, "restarting in 0.02 s")) << ::testing::PrintToString(lines);
  EXPECT_TRUE(Has(lines, "restarting in 0.04 s"));
  EXPECT_TRUE(Has(lines, "restarting in 0.08 s"));
  // Nothing more happens to it; the steady one was never touched.
  auto after = SuperviseUntil(g, [](const auto&) { return false; }, std::chrono::seconds(1));
  EXPECT_TRUE(after.empty()) << ::testing::PrintToString(after);
  EXPECT_EQ(kill(steady, 0), 0);
  g.StopAll(std::chrono::seconds(2));
  std::filesystem::remove_all(dir);
}

TEST(ClusterSpec, SelfHealingFieldsAndTheirBounds) {
  auto s = ParseClusterSpec(R"({"name": "x", "model": {"name": "m", "path": "/m"}, "drainSeconds": 7,
                                "experts": {"failoverMs": 1500, "restartGraceMs": 0}})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->drain_seconds, 7);
  EXPECT_EQ(s->expert_failover_ms, 1500);
  EXPECT_EQ(s->expert_restart_grace_ms, 0);
  auto d = ParseClusterSpec(R"({"name": "x"})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->drain_seconds, 30);
  EXPECT_EQ(d->expert_failover_ms, 3000);
  EXPECT_EQ(d->expert_restart_grace_ms, 20000);
  auto bad = ParseClusterSpec(R"({"experts": {"failoverMs": 10}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("experts.failoverMs"), std::string::npos) << bad.status();
  EXPECT_FALSE(ParseClusterSpec(R"({"drainSeconds": -1})").ok());
}

}  // namespace
}  // namespace dsv3
