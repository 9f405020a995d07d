// Every CPU ISA against a float64 reference, for every weight type, at decode (GEMV) and
// prefill (panel + sgemm) shapes, including FP8 partial blocks and odd column counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/backend.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/number_formats.h"

namespace dsv3::kernels {
namespace {

struct TestWeight {
  WeightMatrix w;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  std::vector<double> ref;  // dequantized, float64
};

TestWeight MakeWeight(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  TestWeight t;
  t.w.type = type;
  t.w.rows = rows;
  t.w.cols = cols;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  t.ref.resize(rows * cols);
  if (type == WeightType::kF8E4M3) {
    t.bytes.resize(rows * cols);
    const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    t.scales.resize(sr * sc);
    for (auto& s : t.scales) s = std::ldexp(1.0f + 0.37f * (rng() % 7), -9 + static_cast<int>(rng() % 4));
    t.w.scale_inv = t.scales.data();
    for (int64_t i = 0; i < rows * cols; ++i) {
      uint8_t code = static_cast<uint8_t>(rng() & 0xff);
      if ((code & 0x7f) == 0x7f) code &= 0xfe;  // no NaN codes
      t.bytes[i] = code;
      const float v = cpu::E4m3ToF32(code) * t.scales[(i / cols / 128) * sc + (i % cols) / 128];
      t.ref[i] = v;
    }
  } else if (type == WeightType::kBF16) {
    t.bytes.resize(rows * cols * 2);
    auto* p = reinterpret_cast<uint16_t*>(t.bytes.data());
    for (int64_t i = 0; i < rows * cols; ++i) {
      p[i] = F32ToBf16(nd(rng));
      t.ref[i] = cpu::Bf16ToF32(p[i]);
    }
  } else {
    t.bytes.resize(rows * cols * 4);
    auto* p = reinterpret_cast<float*>(t.bytes.data());
    for (int64_t i = 0; i < rows * cols; ++i) t.ref[i] = p[i] = nd(rng);
  }
  t.w.data = t.bytes.data();
  return t;
}

TEST(CpuKernels, E4m3DecodesEveryCode) {
  // Known values of the e4m3fn format.
  EXPECT_EQ(cpu::E4m3ToF32(0x00), 0.0f);
  EXPECT_EQ(cpu::E4m3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(cpu::E4m3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(cpu::E4m3ToF32(0x38), 1.0f);
  EXPECT_EQ(cpu::E4m3ToF32(0x7e), 448.0f);
  EXPECT_EQ(cpu::E4m3ToF32(0xfe), -448.0f);
  EXPECT_TRUE(std::isnan(cpu::E4m3ToF32(0x7f)));
  // The SIMD dequantizers reproduce the scalar decode (times the scale) bit for bit.
  std::vector<uint8_t> codes;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) != 0x7f) codes.push_back(static_cast<uint8_t>(c));
  }
  const float scale = 0.0123f;
  WeightMatrix w{WeightType::kF8E4M3, 1, static_cast<int64_t>(codes.size()), codes.data(), &scale, 128, 128};
  std::vector<float> scales(2, scale);
  w.scale_inv = scales.data();
  for (auto isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    auto b = MakeCpuBackend({isa, 1});
    if (!b) continue;
    std::vector<float> out(codes.size());
    b->DequantizeRows(w, 0, 1, out.data());
    for (size_t i = 0; i < codes.size(); ++i) {
      ASSERT_EQ(out[i], cpu::E4m3ToF32(codes[i]) * scale) << b->name() << " code " << int(codes[i]);
    }
  }
}

TEST(CpuKernels, UnsupportedIsaIsAnError) {
  if (DetectCpuIsa() == CpuIsa::kAvx512) GTEST_SKIP() << "this CPU supports every ISA";
  std::string err;
  EXPECT_EQ(MakeCpuBackend({CpuIsa::kAvx512, 1}, &err), nullptr);
  EXPECT_NE(err.find("does not support"), std::string::npos);
}

struct Shape {
  int64_t m, rows, cols;
};

class LinearTest : public ::testing::TestWithParam<std::tuple<CpuIsa, WeightType>> {};

TEST_P(LinearTest, MatchesFloat64Reference) {
  auto [isa, type] = GetParam();
  auto b = MakeCpuBackend({isa, 2});
  if (!b) GTEST_SKIP() << "ISA " << CpuIsaName(isa) << " not supported by this CPU";
  std::mt19937 rng(42);
  for (Shape s : {Shape{1, 37, 300}, Shape{3, 130, 129}, Shape{16, 256, 512}, Shape{5, 8, 7},
                  Shape{17, 200, 260}, Shape{64, 300, 96}}) {
    TestWeight t = MakeWeight(type, s.rows, s.cols, rng);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(s.m * s.cols), y(s.m * s.rows);
    for (auto& v : x) v = nd(rng);
    b->Linear(x.data(), s.m, t.w, y.data());
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t r = 0; r < s.rows; ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < s.cols; ++c) {
          ref += t.ref[r * s.cols + c] * x[i * s.cols + c];
          mag += std::fabs(t.ref[r * s.cols + c] * x[i * s.cols + c]);
        }
        ASSERT_NEAR(y[i * s.rows + r], ref, 1e-5 * mag + 1e-6)
            << b->name() << " m=" << s.m << " rows=" << s.rows << " cols=" << s.cols << " at (" << i << "," << r << ")";
      }
    }
  }
}

// Row views (as MLA takes per-head slices of kv_b) at offsets that are not FP8 block
// aligned, in both the plain and the transposed product.
TEST_P(LinearTest, RowSlicesAndTransposedProduct) {
  auto [isa, type] = GetParam();
  auto b = MakeCpuBackend({isa, 2});
  if (!b) GTEST_SKIP() << "ISA not supported";
  std::mt19937 rng(11);
  const int64_t rows = 300, cols = 144;
  TestWeight t = MakeWeight(type, rows, cols, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t row0 : {0, 16, 131, 250}) {
    const int64_t n = 37, m = 3;
    WeightMatrix s = t.w.RowSlice(row0, n);
    std::vector<float> x(m * cols), y(m * n), xt(m * n), yt(m * cols);
    for (auto& v : x) v = nd(rng);
    for (auto& v : xt) v = nd(rng);
    b->Linear(x.data(), m, s, y.data());
    b->LinearTransposed(xt.data(), m, s, yt.data());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < n; ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          ref += t.ref[(row0 + r) * cols + c] * x[i * cols + c];
          mag += std::fabs(t.ref[(row0 + r) * cols + c] * x[i * cols + c]);
        }
        ASSERT_NEAR(y[i * n + r], ref, 1e-5 * mag + 1e-6) << b->name() << " slice at " << row0;
      }
      for (int64_t c = 0; c < cols; ++c) {
        double ref = 0, mag = 0;
        for (int64_t r = 0; r < n; ++r) {
          ref += t.ref[(row0 + r) * cols + c] * xt[i * n + r];
          mag += std::fabs(t.ref[(row0 + r) * cols + c] * xt[i * n + r]);
        }
        ASSERT_NEAR(yt[i * cols + c], ref, 1e-5 * mag + 1e-6) << b->name() << " transposed slice at " << row0;
      }
    }
  }
}

// A token's GEMV result must not depend on how many other tokens share the call: up to
// 16 rows (every weight type) and, for quantized weights, up to 64 rows (batched decode).
TEST_P(LinearTest, DecodeRowsAreBatchInvariant) {
  auto [isa, type] = GetParam();
  auto b = MakeCpuBackend({isa, 2});
  if (!b) GTEST_SKIP() << "ISA not supported";
  std::mt19937 rng(7);
  TestWeight t = MakeWeight(type, 150, 200, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t m = type == WeightType::kF32 ? 16 : 64;
  std::vector<float> x(m * 200);
  for (auto& v : x) v = nd(rng);
  std::vector<float> all(m * 150), some(5 * 150), one(150);
  b->Linear(x.data(), m, t.w, all.data());
  for (int64_t i = 0; i < m; ++i) {
    b->Linear(x.data() + i * 200, 1, t.w, one.data());
    for (int64_t r = 0; r < 150; ++r) ASSERT_EQ(one[r], all[i * 150 + r]) << "row " << i << " of " << m;
  }
  const int64_t first = m - 7;
  b->Linear(x.data() + first * 200, 5, t.w, some.data());
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t r = 0; r < 150; ++r) ASSERT_EQ(some[i * 150 + r], all[(first + i) * 150 + r]) << "row " << first + i;
  }
}

std::string LinearTestName(const ::testing::TestParamInfo<std::tuple<CpuIsa, WeightType>>& info) {
  static const char* kType[] = {"f32", "bf16", "f16", "fp8"};
  return std::string(CpuIsaName(std::get<0>(info.param))) + "_" + kType[static_cast<int>(std::get<1>(info.param))];
}

INSTANTIATE_TEST_SUITE_P(
    AllIsas, LinearTest,
    ::testing::Combine(::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                       ::testing::Values(WeightType::kF32, WeightType::kBF16, WeightType::kF8E4M3)),
    LinearTestName);

TEST(CpuKernels, ThreadPoolRunsEveryIndexOnce) {
  auto b = MakeCpuBackend({CpuIsa::kAuto, 3});
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> hits(37);
    b->ParallelFor(37, [&](int64_t i) {
      hits[i]++;
      b->ParallelFor(3, [&](int64_t) {});  // nested: runs inline
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

}  // namespace
}  // namespace dsv3::kernels
