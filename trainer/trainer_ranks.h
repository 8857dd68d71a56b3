// How a training command becomes ranks: `--nproc N` on a command started by hand re-runs the
// command as N local ranks (sp/rank_run.h) and waits for them; a rank (RANK / WORLD_SIZE /
// MASTER_ADDR / MASTER_PORT, torchrun's convention, or a rank of such a launch) builds the trainer's
// DP × SP mesh from sp.size / sp.ulysses / sp.ring. Shared by `lvrl sft` and `lvrl train`.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "sp/mesh.h"

namespace lvrl::trainer {

// nproc > 1 in a process that is no rank yet: starts `args` (the command without --nproc, then
// "--nproc N") as nproc local ranks, threads shared out, and returns their exit code. Otherwise
// nullopt: this process is the rank (or the only one).
std::optional<int> run_as_local_ranks(int nproc, std::vector<std::string> args);

// The world from the environment, split into data-parallel groups of sp.size ranks (InputError
// naming sp.size when the world does not divide). One process alone uses every core unless
// OMP_NUM_THREADS says otherwise.
std::shared_ptr<sp::Mesh> trainer_mesh(const Config& config);

}  // namespace lvrl::trainer
