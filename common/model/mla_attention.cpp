#include "common/model/mla_attention.h"

#include <algorithm>

namespace dsv3 {

namespace {
// Up to this many rows per step, kv_b is used in place instead of dequantized.
constexpr int64_t kDirectMaxTokens = 16;
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
    float* dst = s.kv->layer(layer) + s.start_pos * LD;
    std::copy_n(lat.data() + s.row * LD, s.len * LD, dst);
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
  for (const auto& s : seqs) {
    const int64_t S = s.start_pos + s.len;  // keys visible to the last row
    const int64_t rows = s.len * H;
    const float* cache = s.kv->layer(layer);
    std::vector<float> scores(static_cast<size_t>(rows * S));
    // scores = q_abs . c^T + q_pe . k_pe^T, then the scale (as the reference: sum, then scale).
    backend_.Gemm(false, true, rows, S, C, 1.0f, qabs.data() + s.row * H * C, C, cache, LD, 0.0f, scores.data(), S);
    backend_.Gemm(false, true, rows, S, rope, 1.0f, q.data() + s.row * H * qk + nope, qk, cache + C, LD, 1.0f,
                  scores.data(), S);
    std::vector<int64_t> valid(static_cast<size_t>(rows));
    for (int64_t t = 0; t < s.len; ++t) {
      for (int64_t h = 0; h < H; ++h) valid[t * H + h] = s.start_pos + t + 1;  // causal
    }
    for (int64_t i = 0; i < rows * S; ++i) scores[i] *= softmax_scale_;
    backend_.SoftmaxRows(scores.data(), rows, S, valid.data());
    backend_.Gemm(false, false, rows, C, S, 1.0f, scores.data(), S, cache, LD, 0.0f, olat.data() + s.row * H * C, C);
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
