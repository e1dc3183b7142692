// A file compiled into the binary (see cmake/Embed.cmake).
#pragma once

#include <string_view>

namespace ap {

struct EmbeddedFile {
  std::string_view name;
  std::string_view content;
};

}  // namespace ap
