// Translation between the attention service's protobuf messages and the engine's types.
#pragma once

#include "proto/dsv3/attention.pb.h"
#include "services/attention-worker/engine/generate_request.h"

namespace dsv3 {

namespace attention_pb = ::dsv3::attention::v1;

// Field-level checks the engine does not do (the proto's own limits).
StatusOr<GenerateParams> ParamsFromProto(const attention_pb::GenerateRequest& r);
attention_pb::GenerateRequest ParamsToProto(const GenerateParams& p);
attention_pb::GenerateResponse OutputToProto(const RequestOutput& o);
attention_pb::FinishReason FinishToProto(FinishReason r);

// The header of a KV push (the data travels separately).
attention_pb::KvTransferHeader ExportHeader(const KvExport& ex, const std::string& fingerprint);
StatusOr<std::shared_ptr<KvExport>> ExportFromHeader(const attention_pb::KvTransferHeader& h);

}  // namespace dsv3
