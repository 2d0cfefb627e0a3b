//! The `.tpk` container: layout, streaming writer and zero-copy reader.
