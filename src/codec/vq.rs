//! The `vq` codec stage.
