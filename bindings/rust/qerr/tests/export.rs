//! GGUF export: an F32 file loads back with the same weights, the per-tensor
//! types follow llama-quantize, bad requests fail with no file. Skipped when
//! the shared data is absent.
#![cfg(qerr_model)]
mod common;

use qerr::{status, Model};

#[test]
fn gguf_round_trip_and_errors() {
    let d = match common::shared_data() {
        Some(d) => d,
        None => {
            eprintln!("skip: shared model data not found (set QERR_SHARED_DATA)");
            return;
        }
    };
    let m = Model::load(d.join("stories260k")).unwrap();
    let dir = std::env::temp_dir().join(format!("qerr_rs_gguf_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.gguf");
    let q = qerr::gguf_quantize(None, &m, "F32", None, None, &[], 0, 0).unwrap();
    assert!(q.is_empty());
    qerr::gguf_save(&m, Some(&q), "F32", None, &path).unwrap();
    let g = Model::load(&path).unwrap();
    for name in m.tensor_names() {
        assert_eq!(g.tensor(&name).unwrap(), m.tensor(&name).unwrap(), "{}", name);
    }
    assert_eq!(qerr::gguf_tensor_type(&m, "lm_head.weight", "Q4_K_M", None).unwrap(), "Q8_0");
    assert_eq!(qerr::gguf_tensor_type(&m, "model.layers.0.mlp.down_proj.weight", "Q4_K", None)
                   .unwrap(), "F16");
    let bad = dir.join("bad.gguf");
    let e = qerr::gguf_save(&m, None, "Q9_K", None, &bad).unwrap_err();
    assert_eq!(e.code(), status::E_INVALID_ARG);
    let e = qerr::gguf_save(&m, None, "Q4_0", None, &bad).unwrap_err();
    assert_eq!(e.code(), status::E_NOT_FOUND);
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
