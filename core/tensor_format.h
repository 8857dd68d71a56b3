// fmt formatting of tensor shapes and dtypes for messages: fmt::format("{}", t.sizes()) → "[2, 3]",
// fmt::format("{}", t.scalar_type()) → "Float".
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <fmt/format.h>

template <>
struct fmt::formatter<c10::IntArrayRef> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(c10::IntArrayRef sizes, Context& ctx) const {
    return fmt::format_to(ctx.out(), "[{}]", fmt::join(sizes, ", "));
  }
};

template <>
struct fmt::formatter<c10::ScalarType> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(c10::ScalarType type, Context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", c10::toString(type));
  }
};
