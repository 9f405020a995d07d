// The safetensors reader against hand-made corrupt files (each must fail with its own
// error naming the file and, where there is one, the tensor), and the writer against the
// reader (byte-exact round trips, sharded with index).
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/checkpoint/checkpoint.h"
#include "common/checkpoint/safetensors_file.h"
#include "common/checkpoint/safetensors_writer.h"
#include "tests/common/checkpoint/test_util.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using testing_util::RawSafetensors;
using testing_util::ReadFileBytes;
using testing_util::WriteFileBytes;
namespace fs = std::filesystem;

void ExpectError(const absl::Status& s, absl::StatusCode code, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), code) << s;
  const std::string m(s.message());
  for (const auto& p : parts) {
    EXPECT_NE(m.find(p), std::string::npos) << "error '" << m << "' does not mention '" << p << "'";
  }
}

std::vector<uint8_t> Pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + salt);
  return v;
}

// A small valid config.json: the reader validates it before looking at any shard.
json SmallConfig() {
  return json{{"model_type", "deepseek_v3"}, {"vocab_size", 16},       {"hidden_size", 8},
              {"intermediate_size", 16},     {"num_hidden_layers", 1}, {"num_attention_heads", 1},
              {"first_k_dense_replace", 1},  {"n_routed_experts", 0},  {"kv_lora_rank", 4},
              {"qk_nope_head_dim", 4},       {"qk_rope_head_dim", 2},  {"v_head_dim", 4},
              {"max_position_embeddings", 64}};
}

class SafetensorsFileTest : public testing_util::TempDirTest {
 protected:
  absl::Status OpenRaw(const std::string& bytes, std::string* path_out = nullptr) {
    const std::string path = Path("t.safetensors");
    WriteFileBytes(path, bytes);
    if (path_out) *path_out = path;
    return SafetensorsFile::Open(path).status();
  }
};

TEST_F(SafetensorsFileTest, ValidFileOpens) {
  std::string path;
  const std::string h = R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                        R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})";
  ASSERT_TRUE(OpenRaw(RawSafetensors(h, 32), &path).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  ASSERT_NE((*f)->Find("b"), nullptr);
  EXPECT_EQ((*f)->Find("b")->dtype, DType::kBF16);
  EXPECT_EQ((*f)->Find("c"), nullptr);
}

TEST_F(SafetensorsFileTest, FileShorterThanLengthPrefix) {
  std::string path;
  auto s = OpenRaw(std::string("\x05\x00\x00", 3), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "too short"});
  ExpectError(OpenRaw(""), absl::StatusCode::kDataLoss, {"0 bytes", "too short"});
}

TEST_F(SafetensorsFileTest, DataCutShort) {
  std::string path;
  const std::string h = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  auto s = OpenRaw(RawSafetensors(h, 10), &path);  // 6 bytes of w are missing
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "'w'", "past the end"});
}

TEST_F(SafetensorsFileTest, HeaderLengthPastEnd) {
  std::string path;
  const std::string h = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  auto s = OpenRaw(RawSafetensors(h, 4, /*declared_len=*/h.size() + 100), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "header length", "past the end of the file"});
  // A length so large that 8 + n overflows must not wrap around.
  s = OpenRaw(RawSafetensors(h, 4, /*declared_len=*/~0ull - 3));
  ExpectError(s, absl::StatusCode::kDataLoss, {"header length", "past the end of the file"});
}

TEST_F(SafetensorsFileTest, MalformedJsonHeader) {
  std::string path;
  auto s = OpenRaw(RawSafetensors(R"({"w":{"dtype":"F32",)", 0), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "malformed JSON header"});
  s = OpenRaw(RawSafetensors(std::string("\xff\xfe{}", 4), 0));
  ExpectError(s, absl::StatusCode::kDataLoss, {"malformed JSON header"});
}

TEST_F(SafetensorsFileTest, HeaderNotAnObject) {
  std::string path;
  auto s = OpenRaw(RawSafetensors("[1, 2, 3]", 0), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "not an object"});
  s = OpenRaw(RawSafetensors(R"({"w": 7})", 0));
  ExpectError(s, absl::StatusCode::kDataLoss, {"'w'", "entry is not an object"});
  s = OpenRaw(RawSafetensors(R"({"__metadata__": 7})", 0));
  ExpectError(s, absl::StatusCode::kDataLoss, {"__metadata__ is not an object"});
}

TEST_F(SafetensorsFileTest, OverlappingOffsets) {
  std::string path;
  const std::string h = R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})";
  auto s = OpenRaw(RawSafetensors(h, 24), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "'b'", "overlaps tensor 'a'"});
}

TEST_F(SafetensorsFileTest, OutOfRangeOffsets) {
  std::string path;
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[1000,1008]}})";
  auto s = OpenRaw(RawSafetensors(h, 16), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "'b'", "[1000, 1008)", "out of range"});
  const std::string h2 = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})";
  ExpectError(OpenRaw(RawSafetensors(h2, 16)), absl::StatusCode::kDataLoss, {"'a'", "begin > end"});
  const std::string h3 = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})";
  ExpectError(OpenRaw(RawSafetensors(h3, 16)), absl::StatusCode::kDataLoss, {"'a'", "non-negative"});
  const std::string h4 = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})";
  ExpectError(OpenRaw(RawSafetensors(h4, 16)), absl::StatusCode::kDataLoss, {"'a'", "[begin, end]"});
}

TEST_F(SafetensorsFileTest, SizeMismatchForDtypeAndShape) {
  std::string path;
  const std::string h = R"({"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}})";
  auto s = OpenRaw(RawSafetensors(h, 24), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "'a'", "does not match dtype BF16", "expected 12"});
  // A shape whose element count overflows 64 bits.
  const std::string h2 = R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})";
  ExpectError(OpenRaw(RawSafetensors(h2, 4)), absl::StatusCode::kDataLoss, {"'a'", "shape too large"});
  const std::string h3 = R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
  ExpectError(OpenRaw(RawSafetensors(h3, 4)), absl::StatusCode::kDataLoss, {"'a'", "non-negative"});
  const std::string h4 = R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,4]}})";
  ExpectError(OpenRaw(RawSafetensors(h4, 4)), absl::StatusCode::kDataLoss, {"'a'", "shape"});
}

TEST_F(SafetensorsFileTest, UnknownDtype) {
  std::string path;
  const std::string h = R"({"a":{"dtype":"F8_E5M9","shape":[4],"data_offsets":[0,4]}})";
  auto s = OpenRaw(RawSafetensors(h, 4), &path);
  ExpectError(s, absl::StatusCode::kDataLoss, {path, "'a'", "unsupported dtype 'F8_E5M9'"});
  const std::string h2 = R"({"a":{"dtype":7,"shape":[4],"data_offsets":[0,4]}})";
  ExpectError(OpenRaw(RawSafetensors(h2, 4)), absl::StatusCode::kDataLoss, {"'a'", "dtype"});
}

TEST_F(SafetensorsFileTest, MissingFile) {
  auto s = SafetensorsFile::Open(Path("nope.safetensors")).status();
  ExpectError(s, absl::StatusCode::kNotFound, {Path("nope.safetensors"), "cannot open"});
}

TEST(SafetensorsHeaderTest, ParseReportsLabel) {
  auto r = ParseSafetensorsHeader("{", 0, "my-label");
  ExpectError(r.status(), absl::StatusCode::kDataLoss, {"my-label", "malformed JSON header"});
  auto ok = ParseSafetensorsHeader(R"({"__metadata__":{"format":"pt"}})", 0, "x");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->empty());
}

// ---- Writer ---------------------------------------------------------------------------

class WriterTest : public testing_util::TempDirTest {};

TEST_F(WriterTest, LayoutMatchesOfficialWriter) {
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("z.bf16", DType::kBF16, {3}, Pattern(6, 1)).ok());
  ASSERT_TRUE(w.Add("a.f8", DType::kF8E4M3, {5}, Pattern(5, 2)).ok());
  ASSERT_TRUE(w.Add("m.f32", DType::kF32, {2}, Pattern(8, 3)).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>((*bytes)[i]);
  EXPECT_EQ(n % 8, 0u) << "header must be padded to 8 bytes";
  EXPECT_EQ(bytes->size(), 8 + n + 6 + 5 + 8);
  const std::string header = bytes->substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"},", 0), 0u) << header;
  EXPECT_EQ(header.find_last_not_of(' ') + 1, header.find_last_of('}') + 1);
  // Sorted by dtype size (F32, BF16, F8), so data offsets follow that order.
  auto j = json::parse(header);
  EXPECT_EQ(j["m.f32"]["data_offsets"], json({0, 8}));
  EXPECT_EQ(j["z.bf16"]["data_offsets"], json({8, 14}));
  EXPECT_EQ(j["a.f8"]["data_offsets"], json({14, 19}));
  EXPECT_EQ(j["a.f8"]["dtype"], "F8_E4M3");
  EXPECT_EQ(bytes->substr(8 + n, 8), std::string(reinterpret_cast<const char*>(Pattern(8, 3).data()), 8));
}

TEST_F(WriterTest, RejectsBadTensors) {
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("a", DType::kF32, {1}, Pattern(4, 0)).ok());
  ExpectError(w.Add("a", DType::kF32, {1}, Pattern(4, 0)), absl::StatusCode::kInvalidArgument,
              {"duplicate tensor 'a'"});
  ExpectError(w.Add("", DType::kF32, {1}, Pattern(4, 0)), absl::StatusCode::kInvalidArgument,
              {"invalid tensor name"});
  ExpectError(w.Add("__metadata__", DType::kF32, {1}, Pattern(4, 0)),
              absl::StatusCode::kInvalidArgument, {"invalid tensor name"});
  ExpectError(w.Add("n", DType::kF32, {-1}, {}), absl::StatusCode::kInvalidArgument, {"negative"});
  SafetensorsWriter w2;
  ASSERT_TRUE(w2.Add("short", DType::kF32, {3}, Pattern(8, 0)).ok());
  ExpectError(w2.WriteFile(Path("x.safetensors")), absl::StatusCode::kInvalidArgument,
              {"'short'", "given 8 bytes", "need 12"});
  EXPECT_FALSE(fs::exists(Path("x.safetensors")));
  EXPECT_FALSE(fs::exists(Path("x.safetensors.tmp")));
}

TEST(ShardNamingTest, HuggingFaceNames) {
  EXPECT_EQ(ShardFileName(0, 2), "model-00001-of-00002.safetensors");
  EXPECT_EQ(ShardFileName(162, 163), "model-00163-of-00163.safetensors");
}

// ---- Checkpoint (directory + index) ---------------------------------------------------

class CheckpointTest : public testing_util::TempDirTest {
 protected:
  struct Expected {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };

  void SetUp() override {
    TempDirTest::SetUp();
    WriteFileBytes(Path("config.json"), SmallConfig().dump());
    auto add = [&](const std::string& name, DType dt, std::vector<int64_t> shape) {
      uint64_t n = DTypeSize(dt);
      for (int64_t d : shape) n *= static_cast<uint64_t>(d);
      expected_[name] = {dt, shape, Pattern(n, static_cast<uint8_t>(expected_.size()))};
    };
    add("model.embed_tokens.weight", DType::kBF16, {16, 8});
    add("model.layers.0.mlp.down_proj.weight", DType::kF8E4M3, {8, 130});
    add("model.layers.0.mlp.down_proj.weight_scale_inv", DType::kF32, {1, 2});
    add("model.layers.0.mlp.gate.e_score_correction_bias", DType::kF32, {4});
    add("model.norm.weight", DType::kBF16, {8});
    add("lm_head.weight", DType::kF16, {16, 8});
    add("empty", DType::kF32, {0, 3});
  }

  // Writes the expected tensors into `shards` shards; the FP8 weight and its scale go to
  // different shards when there are at least two.
  void WriteShards(int shards) {
    std::vector<TensorToWrite> ts;
    for (const auto& [name, e] : expected_) ts.push_back(TensorFromBytes(name, e.dtype, e.shape, e.bytes));
    auto r = WriteShardedCheckpoint(dir_.string(), std::move(ts), shards,
                                    [shards](const TensorToWrite& t, size_t i) {
                                      if (t.name == "model.layers.0.mlp.down_proj.weight") return 0;
                                      if (t.name == "model.layers.0.mlp.down_proj.weight_scale_inv") {
                                        return shards - 1;
                                      }
                                      return static_cast<int>(i % shards);
                                    });
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->shard_files.size(), static_cast<size_t>(shards));
  }

  json ReadIndex() { return json::parse(ReadFileBytes(Path("model.safetensors.index.json"))); }
  void WriteIndex(const json& j) { WriteFileBytes(Path("model.safetensors.index.json"), j.dump()); }

  std::map<std::string, Expected> expected_;
};

TEST_F(CheckpointTest, ShardedRoundTripIsByteExact) {
  WriteShards(3);
  const json index = ReadIndex();
  uint64_t total = 0;
  for (const auto& [n, e] : expected_) total += e.bytes.size();
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_NE(index["weight_map"]["model.layers.0.mlp.down_proj.weight"],
            index["weight_map"]["model.layers.0.mlp.down_proj.weight_scale_inv"]);

  auto ck = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto names = (*ck)->TensorNames();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want;
  for (const auto& [n, e] : expected_) want.push_back(n);
  EXPECT_EQ(names, want);
  ASSERT_TRUE((*ck)->Load(want).ok());
  for (const auto& [name, e] : expected_) {
    auto v = (*ck)->Get(name, {e.dtype}, e.shape);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->dtype(), e.dtype);
    EXPECT_EQ(v->shape(), e.shape);
    if (!e.bytes.empty()) {
      ASSERT_NE(v->data, nullptr) << name;
      EXPECT_EQ(std::memcmp(v->data, e.bytes.data(), e.bytes.size()), 0) << name;
    }
  }
}

TEST_F(CheckpointTest, SingleFileRoundTrip) {
  SafetensorsWriter w;
  for (const auto& [name, e] : expected_) ASSERT_TRUE(w.Add(name, e.dtype, e.shape, e.bytes).ok());
  ASSERT_TRUE(w.WriteFile(Path("model.safetensors")).ok());
  auto ck = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status();
  ASSERT_TRUE((*ck)->Load({"lm_head.weight"}).ok());
  auto v = (*ck)->Get("lm_head.weight", {DType::kF16});
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& e = expected_["lm_head.weight"];
  EXPECT_EQ(std::memcmp(v->data, e.bytes.data(), e.bytes.size()), 0);
}

TEST_F(CheckpointTest, DefaultShardSplitIsContiguousAndComplete) {
  // Names built with append: GCC 12's -Wrestrict misfires on "t" + std::to_string(i).
  auto name = [](int i) {
    std::string n = "t";
    n.append(std::to_string(i));
    return n;
  };
  std::vector<TensorToWrite> ts;
  for (int i = 0; i < 10; ++i) {
    ts.push_back(TensorFromBytes(name(i), DType::kU8, {i == 0 ? 1000 : 10},
                                 Pattern(i == 0 ? 1000 : 10, 0)));
  }
  auto r = WriteShardedCheckpoint(dir_.string(), std::move(ts), 4);
  ASSERT_TRUE(r.ok()) << r.status();
  const json wm = ReadIndex()["weight_map"];
  int prev = 0;
  for (int i = 0; i < 10; ++i) {
    const std::string f = wm[name(i)];
    const int shard = std::stoi(f.substr(6, 5)) - 1;
    EXPECT_GE(shard, prev);
    EXPECT_LE(shard, prev + 1);
    prev = shard;
  }
  EXPECT_EQ(prev, 3);
  ExpectError(WriteShardedCheckpoint(Path("sub"), {TensorFromBytes("a", DType::kU8, {1}, {1})}, 2).status(),
              absl::StatusCode::kInvalidArgument, {"2 shards requested for 1 tensors"});
}

TEST_F(CheckpointTest, GetChecksDtypeAndShape) {
  WriteShards(2);
  auto ck = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status();
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  ASSERT_TRUE((*ck)->Load({name}).ok());
  const std::string file = Path(ReadIndex()["weight_map"][name].get<std::string>());
  ExpectError((*ck)->Get(name, {DType::kBF16, DType::kF32}).status(), absl::StatusCode::kInvalidArgument,
              {file, "'" + name + "'", "dtype F8_E4M3", "expected BF16/F32"});
  ExpectError((*ck)->Get(name, {DType::kF8E4M3}, {130, 8}).status(), absl::StatusCode::kInvalidArgument,
              {file, "'" + name + "'", "shape [8, 130]", "expected [130, 8]"});
  EXPECT_TRUE((*ck)->Get(name, {DType::kBF16, DType::kF8E4M3}, {8, 130}).ok());
  // Present in the index but its shard was never mapped: an error, not a null pointer.
  const std::string scale = name + "_scale_inv";
  ExpectError((*ck)->Get(scale).status(), absl::StatusCode::kInternal, {"'" + scale + "'", "not loaded"});
}

TEST_F(CheckpointTest, MissingScaleIsNotFoundByName) {
  expected_.erase("model.layers.0.mlp.down_proj.weight_scale_inv");
  WriteShards(2);
  auto ck = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status();
  const std::string scale = "model.layers.0.mlp.down_proj.weight_scale_inv";
  EXPECT_FALSE((*ck)->Has(scale));
  ExpectError((*ck)->Get(scale, {DType::kF32}).status(), absl::StatusCode::kNotFound,
              {"missing tensor '" + scale + "'"});
  ExpectError((*ck)->Load({scale}), absl::StatusCode::kNotFound, {"'" + scale + "'", "not in the checkpoint"});
}

TEST_F(CheckpointTest, IndexListsTensorTheShardLacks) {
  WriteShards(2);
  json index = ReadIndex();
  index["weight_map"]["model.layers.0.ghost.weight"] = "model-00002-of-00002.safetensors";
  WriteIndex(index);
  auto s = Checkpoint::Open(dir_.string()).status();
  ExpectError(s, absl::StatusCode::kDataLoss,
              {Path("model-00002-of-00002.safetensors"), "'model.layers.0.ghost.weight'",
               "missing from the shard"});
}

TEST_F(CheckpointTest, TensorMissingFromIndexEntirely) {
  WriteShards(2);
  json index = ReadIndex();
  index["weight_map"].erase("model.norm.weight");
  WriteIndex(index);
  auto ck = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_FALSE((*ck)->Has("model.norm.weight"));
  ExpectError((*ck)->Load({"model.norm.weight"}), absl::StatusCode::kNotFound,
              {dir_.string(), "'model.norm.weight'", "not in the checkpoint"});
  ExpectError((*ck)->Get("model.norm.weight").status(), absl::StatusCode::kNotFound,
              {"missing tensor 'model.norm.weight'"});
}

TEST_F(CheckpointTest, IndexPointsToMissingShard) {
  WriteShards(2);
  json index = ReadIndex();
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00003.safetensors";
  WriteIndex(index);
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kNotFound,
              {Path("model-00003-of-00003.safetensors"), "cannot open"});
}

TEST_F(CheckpointTest, ShardNameWithPathTraversal) {
  WriteShards(2);
  for (const std::string bad : {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub\\x", "..", ""}) {
    json index = ReadIndex();
    index["weight_map"]["model.norm.weight"] = bad;
    WriteIndex(index);
    ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kDataLoss,
                {"model.safetensors.index.json", "'model.norm.weight'", "invalid shard file name"});
  }
  json index = ReadIndex();
  index["weight_map"]["model.norm.weight"] = 3;
  WriteIndex(index);
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kDataLoss,
              {"'model.norm.weight'", "invalid shard file name"});
}

TEST_F(CheckpointTest, MalformedIndex) {
  WriteShards(2);
  WriteFileBytes(Path("model.safetensors.index.json"), "{\"weight_map\": {");
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kDataLoss,
              {Path("model.safetensors.index.json"), "malformed JSON"});
  WriteIndex(json{{"metadata", json::object()}});
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kDataLoss,
              {Path("model.safetensors.index.json"), "weight_map"});
}

TEST_F(CheckpointTest, CorruptShardNamesTheShard) {
  WriteShards(2);
  const std::string shard = Path("model-00002-of-00002.safetensors");
  std::string bytes = ReadFileBytes(shard);
  bytes.resize(bytes.size() - 3);  // cut the last tensor short
  WriteFileBytes(shard, bytes);
  auto s = Checkpoint::Open(dir_.string()).status();
  ExpectError(s, absl::StatusCode::kDataLoss, {shard, "past the end"});
}

TEST_F(CheckpointTest, MissingOrInvalidConfig) {
  WriteShards(2);
  fs::remove(Path("config.json"));
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kNotFound, {"config.json"});
  json c = SmallConfig();
  c["hidden_size"] = "wide";
  WriteFileBytes(Path("config.json"), c.dump());
  ExpectError(Checkpoint::Open(dir_.string()).status(), absl::StatusCode::kInvalidArgument,
              {"config.json", "hidden_size"});
}

}  // namespace
}  // namespace dsv3
