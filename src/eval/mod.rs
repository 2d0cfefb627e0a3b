//! Perplexity and KL-divergence evaluation of a LLaMA-family model.
