// Model test support: expect an InputError that names a key.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace lvrl::testing_model {

// Runs `body`, expects an InputError whose key is `key`; returns its message for further checks.
template <typename Body>
std::string expect_input_error(Body body, const std::string& key) {
  try {
    body();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError naming " << key;
  return "";
}

}  // namespace lvrl::testing_model
