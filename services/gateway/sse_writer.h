// Server-sent events over HTTP/1.1 chunked transfer encoding: the byte framing the gateway
// writes for streamed completions ("data: {json}\n\n" events, "data: [DONE]\n\n" at the
// end of a successful stream).
#pragma once

#include <string>
#include <string_view>

namespace dsv3::gateway {

// One SSE event carrying `data`; a multi-line payload becomes several data: lines.
std::string SseEvent(std::string_view data);
// The OpenAI end-of-stream marker. Not sent after a mid-stream error.
std::string SseDone();
// HTTP/1.1 chunked framing of one payload; the terminating zero-length chunk.
std::string HttpChunk(std::string_view payload);
std::string HttpLastChunk();

}  // namespace dsv3::gateway
