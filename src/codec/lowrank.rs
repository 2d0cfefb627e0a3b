//! The `lowrank` codec stage.
