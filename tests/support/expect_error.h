// Expecting bad input to be refused: `body` must throw lvrl::InputError (core/error.h); the error
// comes back for further checks of its file, line, value and message.
//
//   expect_input_error([&] { Config::parse(yaml, "run.yaml", {}, schema); }, "data.fps");
//   expect_input_error_mentioning([] { smart_resize(0, 28, 28, lo, hi); }, {"0x28"});
//   EXPECT_NE(std::string(expect_input_error([&] { load(dir); }).what()).find(dir), std::string::npos);
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace lvrl::test {

// A test failure when `body` returns or throws something else (then an empty InputError comes back).
template <typename Body>
InputError expect_input_error(Body&& body) {
  try {
    body();
  } catch (const InputError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an lvrl::InputError";
  return InputError({}, "");
}

// ... whose key is `key` ("" for an error that names none).
template <typename Body>
InputError expect_input_error(Body&& body, const std::string& key) {
  try {
    body();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    return e;
  }
  ADD_FAILURE() << "expected an lvrl::InputError naming '" << key << "'";
  return InputError({}, "");
}

// ... whose message contains every one of `fragments`.
template <typename Body>
InputError expect_input_error_mentioning(Body&& body, const std::vector<std::string>& fragments) {
  const InputError e = expect_input_error(body);
  const std::string message = e.what();
  for (const std::string& fragment : fragments) {
    EXPECT_NE(message.find(fragment), std::string::npos) << "'" << fragment << "' missing from: " << message;
  }
  return e;
}

}  // namespace lvrl::test
