// The web chat page served at GET /: one self-contained HTML file (web/index.html, inline
// CSS and JS, no external resources) compiled into the binary at build time.
#pragma once

#include <string_view>

namespace dsv3::gateway {

std::string_view WebChatPage();

}  // namespace dsv3::gateway
