//! Model-level API on the shared real models; compiled only when the
//! library has qerr/model.h's functions, skipped when the data is absent.
#![cfg(qerr_model)]
mod common;

use qerr::{status, Context, Matrix, Model, Plan, QModel};

fn data() -> Option<std::path::PathBuf> {
    let d = common::shared_data();
    if d.is_none() {
        eprintln!("skip: shared model data not found (set QERR_SHARED_DATA)");
    }
    d
}

#[test]
fn float_perplexity_matches_reference() {
    let d = match data() {
        Some(d) => d,
        None => return,
    };
    let m = Model::load(d.join("stories260k")).unwrap();
    assert_eq!(m.config_int("hidden_size").unwrap(), 64);
    assert!((m.config_double("rms_norm_eps").unwrap() - 1e-5).abs() < 1e-12);
    let toks = qerr::read_tokens(d.join("stories260k/eval.u32")).unwrap();
    assert_eq!(toks.len(), 15526);
    let mut ctx = Context::new().unwrap();
    ctx.set_threads(2).unwrap();
    let p = m.perplexity(Some(&mut ctx), &toks, 128, 0).unwrap();
    assert_eq!(p.scored, 15367);
    assert!((p.ppl / 5.873547 - 1.0).abs() < 1e-4, "ppl {}", p.ppl);
    let (shape, w) = m.tensor("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(shape, vec![64, 64]);
    assert!(w.iter().all(|v| v.is_finite()));
    assert_eq!(m.tensor("no.such.weight").unwrap_err().code(), status::E_NOT_FOUND);
}

#[test]
fn quantize_model_save_load_apply() {
    let d = match data() {
        Some(d) => d,
        None => return,
    };
    let mut m = Model::load(d.join("stories260k")).unwrap();
    let eval = qerr::read_tokens(d.join("stories260k/eval.u32")).unwrap();
    let calib = qerr::read_tokens(d.join("stories260k/calib.u32")).unwrap();
    let base = m.perplexity(None, &eval, 128, 40).unwrap().ppl;
    let mut q = qerr::quantize_model(None, &m, "gptq:bits=4,group_size=32,ragged_groups=1",
                                     Some("lm_head=float"), &calib, 16, 128).unwrap();
    let names = q.names();
    assert!(names.iter().any(|n| n.ends_with("q_proj.weight")));
    assert!(!names.iter().any(|n| n.starts_with("lm_head")));
    q.set_meta("note", "rust test").unwrap();
    let path = std::env::temp_dir().join(format!("qerr-rs-{}.qerr", std::process::id()));
    q.save(&path).unwrap();
    let back = QModel::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.names(), names);
    assert_eq!(back.meta("note").as_deref(), Some("rust test"));
    assert_eq!(back.get(&names[0]).unwrap().codes().unwrap(),
               q.get(&names[0]).unwrap().codes().unwrap());
    m.apply(&back).unwrap();
    let quant = m.perplexity(None, &eval, 128, 40).unwrap().ppl;
    assert!(base < quant && quant < 1.5 * base, "{} -> {}", base, quant);
}

#[test]
fn export_gptq_reads_back() {
    let d = match data() {
        Some(d) => d,
        None => return,
    };
    let m = Model::load(d.join("tiny-llama")).unwrap();
    let calib = qerr::read_tokens(d.join("tiny-llama/calib.u32")).unwrap();
    let q = qerr::quantize_model(None, &m, "rtn:bits=8,group_size=128,symmetric=1", None, &calib,
                                 4, 64).unwrap();
    let dir = std::env::temp_dir().join(format!("qerr-rs-gptq-{}", std::process::id()));
    m.export_gptq(&q, &dir, "gptq_v2").unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(cfg.contains("\"checkpoint_format\": \"gptq_v2\""), "{}", cfg);
    let back = Model::load(&dir).unwrap();
    let name = "model.layers.2.self_attn.v_proj.weight";
    let (shape, got) = back.tensor(name).unwrap();
    let want = q.get(name).unwrap().dequantize().unwrap();
    assert_eq!(shape, vec![128, 256]);
    // scales are stored in float16: at most that rounding apart
    for (a, b) in got.iter().zip(want.iter()) {
        assert!((a - b).abs() <= 1e-3 * b.abs() + 1e-6, "{} vs {}", a, b);
    }
    let again = m.export_gptq(&q, &dir, "gptq_v2").unwrap_err();
    assert_eq!(again.code(), status::E_IO);
    for f in ["model.safetensors", "config.json", "quantize_config.json"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn qmodel_takes_results_over() {
    let w = common::Rng::new(1).normals(8 * 16);
    let r = qerr::quantize(&Plan::parse("rtn").unwrap(), Matrix::f32(&w, 8, 16).unwrap(), None)
        .unwrap();
    let codes = r.codes().unwrap();
    let mut q = QModel::new().unwrap();
    q.add("layer", r).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.get("layer").unwrap().codes().unwrap(), codes);
    assert_eq!(q.get("absent").unwrap_err().code(), status::E_NOT_FOUND);
    assert_eq!(q.meta("absent"), None);
}
