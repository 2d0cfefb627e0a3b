//! ggml block formats (q4_0, q4_k, ...), bit-compatible with GGUF.
