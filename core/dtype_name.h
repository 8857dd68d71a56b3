// Floating-point dtypes as users write them on the command line and in configs ("float32",
// "bfloat16", "float16", "float64", PyTorch's names without the "torch." prefix), one table for
// every command that takes a --dtype, so each accepts and spells them the same way.
#pragma once

#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace lvrl {

// "float32" for at::kFloat, ...; nullptr for a dtype without such a name.
const char* float_dtype_name(at::ScalarType dtype);

// The dtype named `name`, when it is one of `allowed`; otherwise an InputError at `where` (its value
// set to `name`) listing the allowed names: "expected float32, bfloat16 or float16".
at::ScalarType parse_float_dtype(const std::string& name, const std::vector<at::ScalarType>& allowed,
                                 InputWhere where);

}  // namespace lvrl
