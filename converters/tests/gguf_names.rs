//! HF <-> GGUF names and the Q/K RoPE row permutation.

mod gguf_common;

use tenpak_converters::gguf::{
    gguf_to_hf_name, hf_to_gguf_name, permute_qk_rows, qk_proj, unpermute_qk_rows, GgufError,
    QkProj,
};

#[test]
fn name_map_both_ways() {
    let pairs = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
        (
            "model.layers.0.input_layernorm.weight",
            "blk.0.attn_norm.weight",
        ),
        (
            "model.layers.12.self_attn.q_proj.weight",
            "blk.12.attn_q.weight",
        ),
        (
            "model.layers.3.self_attn.k_proj.weight",
            "blk.3.attn_k.weight",
        ),
        (
            "model.layers.3.self_attn.v_proj.weight",
            "blk.3.attn_v.weight",
        ),
        (
            "model.layers.3.self_attn.o_proj.weight",
            "blk.3.attn_output.weight",
        ),
        ("model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"),
        (
            "model.layers.29.post_attention_layernorm.weight",
            "blk.29.ffn_norm.weight",
        ),
        (
            "model.layers.1.mlp.gate_proj.weight",
            "blk.1.ffn_gate.weight",
        ),
        ("model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"),
        (
            "model.layers.1.mlp.down_proj.weight",
            "blk.1.ffn_down.weight",
        ),
    ];
    for (hf, gg) in pairs {
        assert_eq!(hf_to_gguf_name(hf).as_deref(), Some(gg), "{hf}");
        assert_eq!(gguf_to_hf_name(gg).as_deref(), Some(hf), "{gg}");
    }
    for none in [
        "model.layers.0.self_attn.rotary_emb.inv_freq",
        "model.layers.x.mlp.up_proj.weight",
        "model.layers.01.mlp.up_proj.weight",
        "model.layers..mlp.up_proj.weight",
        "rope_freqs.weight",
        "blk.0.attn_q",
    ] {
        assert_eq!(hf_to_gguf_name(none), None, "{none}");
        assert_eq!(gguf_to_hf_name(none), None, "{none}");
    }
    assert_eq!(
        qk_proj("model.layers.2.self_attn.q_proj.weight"),
        Some(QkProj::Q)
    );
    assert_eq!(qk_proj("blk.2.attn_k.bias"), Some(QkProj::K));
    assert_eq!(qk_proj("blk.2.attn_v.weight"), None);
}

#[test]
fn permute_hand_checked() {
    // 2 heads of head_dim 4, one byte per row: HF rows are [h0: a0 a1 | b0 b1, h1: ...]
    // where a = first half, b = second half. GGUF interleaves: a0 b0 a1 b1.
    let hf: Vec<u8> = (0..8).collect();
    let gg = permute_qk_rows(&hf, 8, 1, 2).unwrap();
    assert_eq!(gg, vec![0, 2, 1, 3, 4, 6, 5, 7]);
    // Head dim 6, one head, two-byte rows: new row 2i+j = old row j*3+i.
    let hf: Vec<u8> = (0..12).collect();
    let gg = permute_qk_rows(&hf, 6, 2, 1).unwrap();
    assert_eq!(gg, vec![0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
    assert_eq!(unpermute_qk_rows(&gg, 6, 2, 1).unwrap(), hf);
}

#[test]
fn permute_matches_reshape_formula_and_inverts() {
    // Check against the numpy formula W.reshape(n_h, 2, hd/2, in).swapaxes(1, 2)
    // evaluated by index arithmetic, on random quantized-looking rows.
    for (n_head, hd, row_bytes, seed) in [
        (3usize, 8usize, 34usize, 1u64),
        (4, 64, 18, 2),
        (1, 2, 5, 3),
    ] {
        let n_rows = n_head * hd;
        let w = gguf_common::rand_bytes(seed, n_rows * row_bytes);
        let p = permute_qk_rows(&w, n_rows, row_bytes, n_head).unwrap();
        for h in 0..n_head {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    // reshaped index (h, j, i) -> swapped (h, i, j) -> flat row
                    let old = (h * 2 + j) * (hd / 2) + i;
                    let new = (h * (hd / 2) + i) * 2 + j;
                    assert_eq!(
                        &p[new * row_bytes..(new + 1) * row_bytes],
                        &w[old * row_bytes..(old + 1) * row_bytes]
                    );
                }
            }
        }
        assert_eq!(unpermute_qk_rows(&p, n_rows, row_bytes, n_head).unwrap(), w);
        if hd > 2 {
            assert_ne!(p, w, "a non-trivial permutation must move rows");
        }
    }
}

#[test]
fn permute_rejects_bad_shapes() {
    let d = vec![0u8; 24];
    for (n_rows, row_bytes, n_head) in [
        (8, 4, 0),
        (8, 4, 3),
        (6, 4, 2),
        (7, 4, 1),
        (usize::MAX, 2, 1),
    ] {
        assert!(matches!(
            permute_qk_rows(&d, n_rows, row_bytes, n_head),
            Err(GgufError::BadPermuteShape(_))
        ));
    }
    // 6 rows of 4 bytes into 3 heads → head dim 2: fine.
    assert!(permute_qk_rows(&d, 6, 4, 3).is_ok());
}
