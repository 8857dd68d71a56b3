// hiredis return codes through the one check generator (core/error.h): anything but REDIS_OK →
// LibraryError with the context's own error text. After such an error the connection is dead
// (hiredis 0.14): the caller reconnects.
#pragma once

#include <hiredis/hiredis.h>

#include "core/error.h"

#define LVRL_REDIS_CHECK(context, statement)     \
  LVRL_CHECK_GEN(                                \
      "hiredis", statement, lvrl_rc == REDIS_OK, \
      std::string((context) != nullptr && (context)->err ? (context)->errstr : "no context error text"))
