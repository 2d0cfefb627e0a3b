//! The `int` codec stage.
