#include "core/dtype_name.h"

namespace lvrl {
namespace {
struct NamedDtype {
  at::ScalarType dtype;
  const char* name;
};
constexpr NamedDtype kNames[] = {
    {at::kFloat, "float32"}, {at::kBFloat16, "bfloat16"}, {at::kHalf, "float16"}, {at::kDouble, "float64"}};
}  // namespace

const char* float_dtype_name(at::ScalarType dtype) {
  for (const NamedDtype& named : kNames) {
    if (named.dtype == dtype) return named.name;
  }
  return nullptr;
}

at::ScalarType parse_float_dtype(const std::string& name, const std::vector<at::ScalarType>& allowed,
                                 InputWhere where) {
  for (at::ScalarType dtype : allowed) {
    const char* known = float_dtype_name(dtype);
    LVRL_ASSERT(known != nullptr, "parse_float_dtype allows a dtype without a name");
    if (name == known) return dtype;
  }
  std::string expected;
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (i > 0) expected += i + 1 == allowed.size() ? " or " : ", ";
    expected += float_dtype_name(allowed[i]);
  }
  where.value = name;
  throw InputError(where, "expected " + expected);
}

}  // namespace lvrl
