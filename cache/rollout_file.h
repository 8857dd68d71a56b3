// Rollout records in a file: the stream entries of cache/rollout_record.h, one after another, for
// trainers that read records without a queue (`lvrl train`'s file source, tests, offline data).
//
//   file   = "LVRLROLL" version:u32 record*
//   record = byte_count:u64 fields, fields = field_count:u32 (name_len:u32 name value_len:u64 value)*
//   (little-endian integers; each record's fields exactly as encode_rollout writes them)
//
// pack_fields / unpack_fields are the record's bytes alone: they also carry groups between ranks.
// A file cut short (a writer that crashed mid-record) or holding a malformed record is an InputError
// naming the file and the record's byte offset; a file is written whole to a temp name and renamed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cache/rollout_record.h"

namespace lvrl::cache {

std::string pack_fields(const StreamFields& fields);
// `where` names the bytes' origin in errors.
StreamFields unpack_fields(std::string_view bytes, const std::string& where);

void write_rollout_file(const std::string& path, const std::vector<RolloutGroup>& groups);
std::vector<RolloutGroup> read_rollout_file(const std::string& path);

}  // namespace lvrl::cache
