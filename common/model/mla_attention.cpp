#include "common/model/mla_attention.h"

#include <algorithm>

namespace dsv3 {

namespace {
// Up to this many rows per step, kv_b is used in place instead of dequantized: per-row
// products whose result does not depend on the step's size (with the linears' batched
// GEMV up to the same 64 rows, steps of <= 64 tokens are batch-invariant).
constexpr int64_t kDirectMaxTokens = 64;
// Query tokens per attention tile of a long slice (see attend()).
constexpr int64_t kQueryTile = 128;
}  // namespace

MlaAttention::MlaAttention(const ModelConfig& cfg, kernels::Backend& backend)
    : cfg_(cfg),
      backend_(backend),
      inv_freq_(cfg.RopeInvFreq()),
      rope_factor_(cfg.RopeAttentionFactor()),
      softmax_scale_(static_cast<float>(cfg.SoftmaxScale())) {}

void MlaAttention::Forward(const AttentionWeights& w, int64_t layer, const float* xn, int64_t T,
                           const int64_t* positions, const std::vector<SequenceSlice>& seqs, float* out) {
  const int64_t H = cfg_.num_attention_heads, nope = cfg_.qk_nope_head_dim, rope = cfg_.qk_rope_head_dim;
  const int64_t qk = nope + rope, vd = cfg_.v_head_dim, C = cfg_.kv_lora_rank, LD = cfg_.latent_dim();

  // q: [T, H, qk]
  std::vector<float> q(static_cast<size_t>(T * H * qk));
  if (w.q_a) {
    std::vector<float> qa(static_cast<size_t>(T * cfg_.q_lora_rank));
    backend_.Linear(xn, T, *w.q_a, qa.data());
    backend_.RmsNorm(qa.data(), w.q_a_norm, T, cfg_.q_lora_rank, static_cast<float>(cfg_.rms_norm_eps), qa.data());
    backend_.Linear(qa.data(), T, w.q_b, q.data());
  } else {
    backend_.Linear(xn, T, w.q_b, q.data());
  }
  backend_.Rope(q.data() + nope, T, H, H * qk, qk, rope, positions, inv_freq_.data(), rope_factor_);

  // latent: [T, C + rope]; normalize c, rotate k_pe, then store in the caches.
  std::vector<float> lat(static_cast<size_t>(T * LD));
  backend_.Linear(xn, T, w.kv_a, lat.data());
  for (int64_t t = 0; t < T; ++t) {
    backend_.RmsNorm(lat.data() + t * LD, w.kv_a_norm, 1, C, static_cast<float>(cfg_.rms_norm_eps), lat.data() + t * LD);
  }
  backend_.Rope(lat.data() + C, T, 1, LD, 0, rope, positions, inv_freq_.data(), rope_factor_);
  for (const auto& s : seqs) {
    for (int64_t p = 0; p < s.len;) {
      int64_t run = 0;
      float* dst = s.kv->Run(layer, s.start_pos + p, &run);
      run = std::min(run, s.len - p);
      std::copy_n(lat.data() + (s.row + p) * LD, run * LD, dst);
      p += run;
    }
  }

  // kv_b rows h*(nope+vd) + [0, nope) are Wk_h, + [nope, nope+vd) are Wv_h. Decode-sized
  // steps read them in place (BF16/FP8 stays compressed); bigger ones dequantize kv_b once
  // and use float32 GEMMs.
  const bool direct = T <= kDirectMaxTokens;
  std::vector<float> wkvb;
  if (!direct) {
    wkvb.resize(static_cast<size_t>(w.kv_b.rows * C));
    backend_.DequantizeRows(w.kv_b, 0, w.kv_b.rows, wkvb.data());
  }

  // q_abs [T, H, C] = q_nope[t, h] . Wk_h  ([nope] x [nope, C])
  std::vector<float> qabs(static_cast<size_t>(T * H * C));
  backend_.ParallelFor(H, [&](int64_t h) {
    if (direct) {
      std::vector<float> qn(static_cast<size_t>(T * nope)), qa(static_cast<size_t>(T * C));
      for (int64_t t = 0; t < T; ++t) std::copy_n(q.data() + (t * H + h) * qk, nope, qn.data() + t * nope);
      backend_.LinearTransposed(qn.data(), T, w.kv_b.RowSlice(h * (nope + vd), nope), qa.data());
      for (int64_t t = 0; t < T; ++t) std::copy_n(qa.data() + t * C, C, qabs.data() + (t * H + h) * C);
    } else {
      backend_.Gemm(false, false, T, C, nope, 1.0f, q.data() + h * qk, H * qk, wkvb.data() + h * (nope + vd) * C, C,
                    0.0f, qabs.data() + h * C, H * C);
    }
  });

  std::vector<float> olat(static_cast<size_t>(T * H * C));
  auto attend = [&](const SequenceSlice& s) {
    const int64_t S = s.start_pos + s.len;  // keys visible to the last row
    // The cache comes in contiguous runs (one for a contiguous cache, one per block for a
    // paged one): scores column range per run, then o_lat accumulated run by run.
    struct CacheRun {
      const float* data;
      int64_t pos, n;
    };
    std::vector<CacheRun> runs;
    for (int64_t p = 0; p < S;) {
      int64_t n = 0;
      const float* d = s.kv->Run(layer, p, &n);
      n = std::min(n, S - p);
      runs.push_back({d, p, n});
      p += n;
    }
    // Long prompts go in tiles of query tokens, each against only the keys it can see
    // (causal: half the score and value work of one [T, S] block, and a score tile that
    // stays in cache). A slice of at most one tile is one block, as before.
    const int64_t tile = std::min(s.len, kQueryTile);
    std::vector<float> scores(static_cast<size_t>(tile * H * S));
    std::vector<int64_t> valid(static_cast<size_t>(tile * H));
    for (int64_t t0 = 0; t0 < s.len; t0 += tile) {
      const int64_t tn = std::min(tile, s.len - t0);
      const int64_t rows = tn * H;
      const int64_t St = s.start_pos + t0 + tn;  // keys visible to this tile's last row
      const int64_t row0 = (s.row + t0) * H;     // first (token, head) row of the tile
      // scores = q_abs . c^T + q_pe . k_pe^T, then the scale (as the reference: sum, then scale).
      for (const CacheRun& r : runs) {
        if (r.pos >= St) break;
        const int64_t n = std::min(r.n, St - r.pos);
        backend_.Gemm(false, true, rows, n, C, 1.0f, qabs.data() + row0 * C, C, r.data, LD, 0.0f,
                      scores.data() + r.pos, St);
        backend_.Gemm(false, true, rows, n, rope, 1.0f, q.data() + row0 * qk + nope, qk, r.data + C, LD, 1.0f,
                      scores.data() + r.pos, St);
      }
      for (int64_t t = 0; t < tn; ++t) {
        for (int64_t h = 0; h < H; ++h) valid[t * H + h] = s.start_pos + t0 + t + 1;  // causal
      }
      for (int64_t i = 0; i < rows * St; ++i) scores[i] *= softmax_scale_;
      backend_.SoftmaxRows(scores.data(), rows, St, valid.data());
      bool first = true;
      for (const CacheRun& r : runs) {
        if (r.pos >= St) break;
        const int64_t n = std::min(r.n, St - r.pos);
        backend_.Gemm(false, false, rows, C, n, 1.0f, scores.data() + r.pos, St, r.data, LD, first ? 0.0f : 1.0f,
                      olat.data() + row0 * C, C);
        first = false;
      }
    }
  };
  // Many short slices (decode batches): one task per sequence. A long slice (prefill):
  // sequences in turn, each GEMM split across the pool.
  int64_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.len);
  if (seqs.size() > 1 && longest <= kDirectMaxTokens) {
    backend_.ParallelFor(static_cast<int64_t>(seqs.size()), [&](int64_t i) { attend(seqs[i]); });
  } else {
    for (const auto& s : seqs) attend(s);
  }

  // attn [T, H, vd] = o_lat[t, h] . Wv_h^T, then o_proj.
  std::vector<float> attn(static_cast<size_t>(T * H * vd));
  backend_.ParallelFor(H, [&](int64_t h) {
    if (direct) {
      std::vector<float> ol(static_cast<size_t>(T * C)), av(static_cast<size_t>(T * vd));
      for (int64_t t = 0; t < T; ++t) std::copy_n(olat.data() + (t * H + h) * C, C, ol.data() + t * C);
      backend_.Linear(ol.data(), T, w.kv_b.RowSlice(h * (nope + vd) + nope, vd), av.data());
      for (int64_t t = 0; t < T; ++t) std::copy_n(av.data() + t * vd, vd, attn.data() + (t * H + h) * vd);
    } else {
      backend_.Gemm(false, true, T, vd, C, 1.0f, olat.data() + h * C, H * C, wkvb.data() + (h * (nope + vd) + nope) * C,
                    C, 0.0f, attn.data() + h * vd, H * vd);
    }
  });
  backend_.Linear(attn.data(), T, w.o, out);
}

}  // namespace dsv3
