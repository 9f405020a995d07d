#include "services/attention-worker/engine/scheduler.h"

#include <algorithm>

namespace dsv3 {

void Scheduler::AddWaiting(Sequence* s) {
  s->state = SeqState::kWaiting;
  waiting_.push_back(s);
}

void Scheduler::AddRunning(Sequence* s) {
  s->state = SeqState::kRunning;
  running_.push_back(s);
}

void Scheduler::DropKv(Sequence* s) {
  if (s->in_kv) {
    (void)kv_.Free(s->id);
    s->in_kv = false;
  }
  s->num_computed = 0;
}

void Scheduler::Remove(Sequence* s) {
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  if (s->in_kv) {
    (void)kv_.Free(s->id);
    s->in_kv = false;
  }
}

void Scheduler::Preempt(Sequence* s, SchedulerOutput* out) {
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  DropKv(s);
  s->state = SeqState::kWaiting;
  ++s->preemptions;
  ++preemptions_;
  waiting_.push_front(s);
  out->preempted.push_back(s);
}

int64_t Scheduler::SliceTokens(const Sequence* s, int64_t budget) const {
  int64_t n = std::min(s->remaining(), budget);
  if (s->replay_from >= 0) {
    // The original prompt as a prompt, then the replayed output one token per step.
    n = s->num_computed >= s->replay_from ? std::min<int64_t>(n, 1) : std::min(n, s->replay_from - s->num_computed);
  }
  return s->wants_prompt_logits() ? std::min(n, cfg_.max_prompt_logit_rows) : n;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int64_t budget = cfg_.max_batch_tokens;

  // Decodes first (one token each, latency-critical), then prompt chunks, each group in
  // admission order.
  std::vector<Sequence*> order(running_.begin(), running_.end());
  std::stable_partition(order.begin(), order.end(), [](const Sequence* s) { return s->remaining() == 1; });
  for (Sequence* s : order) {
    if (budget == 0) break;
    if (s->state != SeqState::kRunning) continue;  // preempted earlier in this loop
    const int64_t n = SliceTokens(s, budget);
    bool scheduled = false;
    while (true) {
      auto ok = kv_.Reserve(s->id, n);
      if (ok.ok() && *ok) {
        scheduled = true;
        break;
      }
      Sequence* victim = running_.back();
      if (victim == s) {
        if (running_.size() == 1) {
          // Nothing left to preempt: the cache cannot hold this sequence at all.
          running_.clear();
          DropKv(s);
          out.cannot_grow.push_back(s);
        } else {
          Preempt(s, &out);
        }
        break;
      }
      // A victim already scheduled this step gives its slice (and budget) back.
      for (auto it = out.slices.begin(); it != out.slices.end(); ++it) {
        if (it->seq == victim) {
          budget += it->num_tokens;
          out.slices.erase(it);
          break;
        }
      }
      Preempt(victim, &out);
    }
    if (scheduled) {
      out.slices.push_back({s, n});
      budget -= n;
    }
  }

  // Admission in arrival order; a step that had to preempt admits nobody.
  if (out.preempted.empty() && out.cannot_grow.empty()) {
    while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < cfg_.max_running) {
      Sequence* s = waiting_.front();
      if (!s->in_kv) {
        // Prompt logprobs need every prompt token computed: no prefix-cache hit then.
        auto cached = kv_.Start(s->id, s->wants_prompt_logits() ? std::vector<int64_t>{} : s->tokens);
        if (!cached.ok()) break;
        s->in_kv = true;
        s->num_computed = *cached;
      }
      const int64_t n = SliceTokens(s, budget);
      auto ok = kv_.Reserve(s->id, n);
      if (!ok.ok() || !*ok) {
        DropKv(s);  // releases its prefix-cache references while it waits
        break;
      }
      waiting_.pop_front();
      s->state = SeqState::kRunning;
      running_.push_back(s);
      out.slices.push_back({s, n});
      budget -= n;
    }
  }
  return out;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats st;
  st.waiting = static_cast<int64_t>(waiting_.size());
  st.running = static_cast<int64_t>(running_.size());
  st.preemptions = preemptions_;
  return st;
}

}  // namespace dsv3
