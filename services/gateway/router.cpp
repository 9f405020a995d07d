#include "services/gateway/router.h"

#include <algorithm>
#include <future>
#include <limits>

#include "services/attention-worker/kv_cache/block_pool.h"
#include "services/gateway/gateway_metrics.h"

namespace dsv3::gateway {

const char* WorkerRoleName(WorkerRole r) {
  switch (r) {
    case WorkerRole::kBoth: return "both";
    case WorkerRole::kPrefill: return "prefill";
    case WorkerRole::kDecode: return "decode";
  }
  return "both";
}

Router::Router(RouterOptions options, GatewayMetrics* metrics) : metrics_(metrics), options_(std::move(options)) {
  auto add = [&](const std::vector<std::string>& addrs, WorkerRole role, std::vector<size_t>* idx) {
    for (const auto& a : addrs) {
      Entry e;
      e.client = std::make_shared<WorkerClient>(a, WorkerRoleName(role));
      e.role = role;
      idx->push_back(entries_.size());
      entries_.push_back(std::move(e));
      if (metrics_) metrics_->SetWorkerUp(a, "", WorkerRoleName(role), false);
    }
  };
  add(options_.workers, WorkerRole::kBoth, &both_);
  add(options_.prefill_workers, WorkerRole::kPrefill, &prefill_);
  add(options_.decode_workers, WorkerRole::kDecode, &decode_);
}

Router::~Router() { Stop(); }

void Router::Start(bool wait_first_poll) {
  if (wait_first_poll) PollOnce();
  poller_ = std::thread([this] { PollLoop(); });
}

void Router::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void Router::PollLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    l.unlock();
    PollOnce();
    l.lock();
    cv_.wait_for(l, options_.poll_interval, [&] { return stop_; });
  }
}

void Router::PollOnce() {
  // Workers are polled concurrently so one hung worker does not delay the others' reports.
  std::vector<std::future<void>> polls;
  polls.reserve(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) polls.push_back(std::async(std::launch::async, [this, i] { PollEntry(i); }));
  for (auto& p : polls) p.wait();
}

void Router::PollEntry(size_t i) {
  Entry& e = entries_[i];  // the vector never changes after construction
  bool described;
  {
    std::lock_guard<std::mutex> l(mu_);
    described = e.described && e.up;
  }
  std::optional<attn::WorkerInfo> info;
  Status err;
  if (!described) {
    auto d = e.client->Describe(options_.rpc_timeout);
    if (d.ok()) info = std::move(*d);
    else err = d.status();
  }
  std::optional<attn::LoadReport> load;
  if (err.ok()) {
    auto r = e.client->GetLoad(options_.rpc_timeout);
    if (r.ok()) load = std::move(*r);
    else err = r.status();
  }
  bool up_changed = false, up = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (info) {
      e.info = std::move(*info);
      e.described = true;
    }
    up = err.ok();
    up_changed = up != e.up;
    e.up = up;
    if (load) e.load = std::move(*load);
    e.last_error = err.ok() ? "" : std::string(err.message());
  }
  if (up_changed && metrics_) {
    std::string id;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (e.described) id = e.info.worker_id();
    }
    metrics_->SetWorkerUp(e.client->address(), id, WorkerRoleName(e.role), up);
  }
}

bool Router::Ready() const {
  std::lock_guard<std::mutex> l(mu_);
  auto any_up = [&](const std::vector<size_t>& idx) {
    return std::any_of(idx.begin(), idx.end(), [&](size_t i) { return entries_[i].up; });
  };
  if (disaggregated()) return any_up(prefill_) && any_up(decode_);
  return any_up(both_);
}

std::optional<attn::WorkerInfo> Router::ModelInfo() const {
  std::lock_guard<std::mutex> l(mu_);
  std::optional<attn::WorkerInfo> best;
  for (const auto& e : entries_) {
    if (!e.up || !e.described) continue;
    // Several workers: the smallest context is the one every request can rely on.
    if (!best || (e.info.max_context() > 0 && e.info.max_context() < best->max_context())) best = e.info;
  }
  return best;
}

std::optional<uint64_t> Router::FirstBlockHash(const std::vector<int32_t>& prompt, int32_t block_size) {
  // The worker caches whole blocks only and never the block holding the prompt's last token.
  if (block_size <= 0 || static_cast<int64_t>(prompt.size()) <= block_size) return std::nullopt;
  std::vector<int64_t> block(prompt.begin(), prompt.begin() + block_size);
  return HashBlock(0, block.data(), block_size);
}

std::unique_ptr<WorkerLease> Router::Pick(WorkerRole role, const std::vector<int32_t>& prompt,
                                          const std::set<std::string>& exclude) {
  const std::vector<size_t>& idx = role == WorkerRole::kBoth ? both_ : role == WorkerRole::kPrefill ? prefill_ : decode_;
  std::lock_guard<std::mutex> l(mu_);
  struct Candidate {
    size_t i;
    double load;
    bool cached;
  };
  std::vector<Candidate> cands;
  std::optional<uint64_t> hash;
  int32_t hash_bs = -1;
  for (size_t i : idx) {
    const Entry& e = entries_[i];
    if (!e.up || exclude.count(e.client->address())) continue;
    const auto& r = e.load;
    // Queued requests weigh more than running ones (they wait for a whole batch slot); a
    // full KV cache means new work waits; the gateway's own outstanding calls cover the
    // time until the next report.
    const double reported = 2.0 * r.waiting() + r.running();
    const double load = std::max(reported, static_cast<double>(e.inflight->load())) + 8.0 * r.kv_usage();
    bool cached = false;
    const int32_t bs = e.info.block_size() > 0 ? e.info.block_size() : r.block_size();
    if (!prompt.empty() && r.cached_prefix_hashes_size() > 0) {
      if (bs != hash_bs) {
        hash = FirstBlockHash(prompt, bs);
        hash_bs = bs;
      }
      if (hash) {
        cached = std::find(r.cached_prefix_hashes().begin(), r.cached_prefix_hashes().end(), *hash) !=
                 r.cached_prefix_hashes().end();
      }
    }
    cands.push_back({i, load, cached});
  }
  if (cands.empty()) return nullptr;
  const auto least = std::min_element(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
    return a.load < b.load;
  });
  const Candidate* chosen = &*least;
  // Prefix affinity wins unless that worker is much busier: recomputing a cached prefix
  // costs less than queueing behind a long batch.
  const double slack = 4.0 + 0.5 * least->load;
  for (const auto& c : cands) {
    if (c.cached && c.load <= least->load + slack && (!chosen->cached || c.load < chosen->load)) chosen = &c;
  }
  const Entry& e = entries_[chosen->i];
  return std::make_unique<WorkerLease>(e.client, e.inflight);
}

void Router::ReportUnreachable(const std::string& address, const std::string& why) {
  bool changed = false;
  WorkerRole role = WorkerRole::kBoth;
  std::string id;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& e : entries_) {
      if (e.client->address() != address) continue;
      changed = e.up;
      e.up = false;
      e.last_error = why;
      role = e.role;
      if (e.described) id = e.info.worker_id();
    }
  }
  if (changed && metrics_) metrics_->SetWorkerUp(address, id, WorkerRoleName(role), false);
}

std::vector<WorkerSnapshot> Router::Snapshot() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<WorkerSnapshot> out;
  for (const auto& e : entries_) {
    WorkerSnapshot s;
    s.address = e.client->address();
    s.role = e.role;
    s.up = e.up;
    s.last_error = e.last_error;
    if (e.described) s.info = e.info;
    if (e.up) s.load = e.load;
    s.gateway_inflight = e.inflight->load();
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace dsv3::gateway
