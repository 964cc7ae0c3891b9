//! Safe wrapper: introspection, plans, calibration, quantization, errors,
//! callbacks and thread-safety markers, checked against real behaviour.
mod common;

use common::{correlated_layer, from_bf16, to_bf16, Rng};
use qerr::{status, Calibration, Context, Dtype, Matrix, ParamType, Plan};

fn calib_for(x: &[f32], n: usize) -> Calibration {
    let mut c = Calibration::new(n).unwrap();
    c.add(x).unwrap();
    c
}

#[test]
fn methods_and_params() {
    let m = qerr::methods();
    assert!(m.iter().any(|s| s == "rtn") && m.iter().any(|s| s == "gptq"));
    assert!(!qerr::method_summary("gptq").unwrap().is_empty());
    let params = qerr::method_params("gptq").unwrap();
    let bits = params.iter().find(|p| p.key == "bits").unwrap();
    assert_eq!((bits.kind, bits.default.as_str(), bits.min, bits.max),
               (ParamType::Int, "4", 2.0, 8.0));
    let damp = params.iter().find(|p| p.key == "damp").unwrap();
    assert_eq!(damp.kind, ParamType::Double);
    for name in &m {
        for p in qerr::method_params(name).unwrap() {
            assert_eq!(p.kind == ParamType::Choice, !p.choices.is_empty(), "{}", p.key);
        }
    }
    let e = qerr::method_params("nosuch").unwrap_err();
    assert_eq!(e.code(), status::E_UNKNOWN_METHOD);
    assert!(e.message().contains("nosuch"));
    assert_eq!(qerr::method_summary("nosuch").unwrap_err().code(), status::E_UNKNOWN_METHOD);
}

#[test]
fn version_agrees() {
    assert_eq!(qerr::version_number() / 10000, qerr::sys::QERR_VERSION_MAJOR);
    assert_eq!(qerr::version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn plans_parse_set_and_refuse() {
    let mut p = Plan::parse("gptq:bits=3,group_size=32").unwrap();
    assert_eq!(p.method(), "gptq");
    assert_eq!(p.get_int("bits").unwrap(), 3);
    p.set_bool("act_order", true).unwrap().set_double("damp", 0.05).unwrap();
    assert_eq!(p.get_int("act_order").unwrap(), 1);
    assert!((p.get_double("damp").unwrap() - 0.05).abs() < 1e-12);
    let spec = p.spec().unwrap();
    assert!(spec.starts_with("gptq:bits=3,group_size=32"), "{}", spec);
    assert_eq!(Plan::parse(&spec).unwrap().to_string(), spec);
    let mut q = p.try_clone().unwrap();
    q.set("bits", "8").unwrap();
    assert_eq!((p.get_int("bits").unwrap(), q.get_int("bits").unwrap()), (3, 8));

    let e = p.set_int("no_such_key", 1).unwrap_err();
    assert_eq!(e.code(), status::E_UNKNOWN_KEY);
    assert!(e.to_string().contains("no_such_key"));
    let e = p.set_int("bits", 1).unwrap_err();
    assert_eq!(e.code(), status::E_RANGE);
    assert_eq!(p.get_int("bits").unwrap(), 3, "a refused value must change nothing");
    assert_eq!(Plan::parse("nosuch:bits=4").unwrap_err().code(), status::E_UNKNOWN_METHOD);
    assert_eq!(Plan::parse("gptq:bits").unwrap_err().code(), status::E_INVALID_ARG);
    assert_eq!(Plan::new("bad\0name").unwrap_err().code(), status::E_INVALID_ARG);
}

#[test]
fn calibration_gram_is_xtx() {
    let n = 16;
    let x = Rng::new(5).normals(40 * n);
    let mut c = Calibration::new(n).unwrap();
    c.add(&x[..20 * n]).unwrap().add(&x[20 * n..]).unwrap();
    assert_eq!((c.in_features(), c.nsamples()), (n, 40));
    let h = c.gram().unwrap();
    for i in 0..n {
        for j in 0..n {
            let r: f64 = (0..40).map(|s| x[s * n + i] as f64 * x[s * n + j] as f64).sum();
            assert!((h[i * n + j] - r).abs() < 1e-3 * (1.0 + r.abs()), "H[{}][{}]", i, j);
        }
    }
    assert_eq!(c.add(&x[..n + 1]).unwrap_err().code(), status::E_SHAPE);
    // bfloat16 rows give the Gram matrix of their float32 values
    let b = to_bf16(&x);
    let mut cb = Calibration::new(n).unwrap();
    cb.add_matrix(Matrix::half(&b, Dtype::BF16, 40, n).unwrap()).unwrap();
    let hb = cb.gram().unwrap();
    let hr = calib_for(&from_bf16(&b), n).gram().unwrap();
    for (a, r) in hb.iter().zip(&hr) {
        assert!((a - r).abs() < 1e-6 * (1.0 + r.abs()));
    }
}

#[test]
fn calibration_files_round_trip_and_reject_damage() {
    let n = 8;
    let x = Rng::new(9).normals(30 * n);
    let c = calib_for(&x, n);
    let dir = std::env::temp_dir().join(format!("qerr-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.calib");
    c.save(&path).unwrap();
    let back = Calibration::load(&path).unwrap();
    assert_eq!(back.gram().unwrap(), c.gram().unwrap());
    assert_eq!(back.nsamples(), 30);
    let g = Calibration::from_gram(&c.gram().unwrap(), n, 30).unwrap();
    assert_eq!(g.gram().unwrap(), c.gram().unwrap());
    assert_eq!(Calibration::from_gram(&[1.0; 5], 2, 1).unwrap_err().code(), status::E_SHAPE);

    let mut raw = std::fs::read(&path).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0xFF;
    let bad = dir.join("bad.calib");
    std::fs::write(&bad, &raw).unwrap();
    let code = Calibration::load(&bad).unwrap_err().code();
    assert!(code == status::E_FORMAT || code == status::E_CHECKSUM, "code {}", code);
    let code = Calibration::load(dir.join("absent")).unwrap_err().code();
    assert!(code == status::E_IO || code == status::E_NOT_FOUND, "code {}", code);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ggml_result_has_offsets() {
    let (rows, cols) = (4, 256);
    let w = Rng::new(3).normals(rows * cols);
    let plan = Plan::parse("ggml:type=q2_k,solver=rtn").unwrap();
    let r = qerr::quantize(&plan, Matrix::f32(&w, rows, cols).unwrap(), None).unwrap();
    let (q, s, z, m) = (r.codes().unwrap(), r.scales().unwrap(), r.zeros().unwrap(),
                        r.mins().unwrap());
    assert_eq!(m.len(), rows * 16);
    assert!(m.iter().any(|&v| v > 0.0));
    let d = r.dequantize().unwrap();
    for i in 0..rows {
        for j in 0..cols {
            let k = i * 16 + j / 16;
            let v = s[k] * (q[i * cols + j] as f32 - z[k] as f32);
            assert_eq!(d[i * cols + j].to_bits(), (v - m[k]).to_bits());
        }
    }
}

#[test]
fn rtn_result_is_consistent() {
    let (rows, cols) = (16, 64);
    let w = Rng::new(1).normals(rows * cols);
    let plan = Plan::parse("rtn:bits=3,group_size=16").unwrap();
    let r = qerr::quantize(&plan, Matrix::f32(&w, rows, cols).unwrap(), None).unwrap();
    assert_eq!((r.rows(), r.cols(), r.bits(), r.group_size(), r.groups()), (rows, cols, 3, 16, 4));
    let (q, s, z, g) = (r.codes().unwrap(), r.scales().unwrap(), r.zeros().unwrap(),
                        r.g_idx().unwrap());
    let d = r.dequantize().unwrap();
    let packed = r.packed().unwrap();
    let row_bytes = (cols * 3 + 7) / 8;
    assert_eq!(packed.len(), rows * row_bytes);
    for i in 0..rows {
        for j in 0..cols {
            assert!(q[i * cols + j] < 8);
            assert_eq!(g[j] as usize, j / 16);
            let k = i * 4 + g[j] as usize;
            let want = s[k] * (q[i * cols + j] as f32 - z[k] as f32);
            assert!((d[i * cols + j] - want).abs() <= 1e-6 * (1.0 + want.abs()));
            assert!((d[i * cols + j] - w[i * cols + j]).abs() <= s[k] / 2.0 + 1e-5);
            // LSB-first unpacking of the packed row gives the same code
            let bit = j * 3;
            let word = packed[i * row_bytes + bit / 8] as u32
                | (*packed.get(i * row_bytes + bit / 8 + 1).unwrap_or(&0) as u32) << 8;
            assert_eq!(((word >> (bit % 8)) & 7) as u8, q[i * cols + j]);
        }
    }
    assert!(r.bits_per_weight() > 3.0 && r.bits_per_weight() < 5.0);
    assert!(r.plan().starts_with("rtn:bits=3,group_size=16"));
    assert!(r.outliers().unwrap().values.is_empty() && r.extras().unwrap().is_empty());
}

#[test]
fn gptq_beats_rtn_on_correlated_data() {
    let (rows, n) = (32, 64);
    let (w, x) = correlated_layer(rows, n, 512, 3);
    let c = calib_for(&x, n);
    let wm = Matrix::f32(&w, rows, n).unwrap();
    let rtn = qerr::quantize(&Plan::parse("rtn:bits=3").unwrap(), wm, Some(&c)).unwrap();
    let gptq = qerr::quantize(&Plan::parse("gptq:bits=3").unwrap(), wm, Some(&c)).unwrap();
    let err = |r: &qerr::QuantResult| {
        let d = r.dequantize().unwrap();
        qerr::layer_error(wm, Matrix::f32(&d, rows, n).unwrap(), &c).unwrap()
    };
    let (e_rtn, e_gptq) = (err(&rtn), err(&gptq));
    assert!(e_gptq < 0.8 * e_rtn, "gptq {} vs rtn {}", e_gptq, e_rtn);
    let diag = gptq.diag("layer_error").unwrap();
    assert!((diag - e_gptq).abs() <= 1e-3 * e_gptq);
    assert!(gptq.diagnostics().unwrap().iter().any(|(k, _)| k == "damp"));
    assert_eq!(gptq.diag("nope").unwrap_err().code(), status::E_NOT_FOUND);
    assert_eq!(qerr::layer_error(wm, wm, &c).unwrap(), 0.0);
}

#[test]
fn errors_map_to_codes_and_messages() {
    let (rows, n) = (8, 32);
    let w = Rng::new(2).normals(rows * n);
    let c16 = calib_for(&Rng::new(3).normals(64 * 16), 16);
    let wm = Matrix::f32(&w, rows, n).unwrap();
    let gptq = Plan::parse("gptq").unwrap();
    let e = qerr::quantize(&gptq, wm, Some(&c16)).unwrap_err();
    assert_eq!(e.code(), status::E_SHAPE);
    assert!(e.message().contains("32") && e.message().contains("16"), "{}", e);
    assert_eq!(qerr::quantize(&gptq, wm, None).unwrap_err().code(), status::E_INVALID_ARG);
    let mut bad = w.clone();
    bad[5] = f32::NAN;
    let e = qerr::quantize(&Plan::parse("rtn").unwrap(), Matrix::f32(&bad, rows, n).unwrap(), None)
        .unwrap_err();
    assert_eq!(e.code(), status::E_NONFINITE);
    assert_eq!(Matrix::f32(&w, rows, n + 1).unwrap_err().code(), status::E_SHAPE);
    assert_eq!(Matrix::half(&[0u16; 4], Dtype::F32, 2, 2).unwrap_err().code(),
               status::E_INVALID_ARG);
    let mut ctx = Context::new().unwrap();
    assert!(ctx.set_threads(100_000).is_err());
}

#[test]
fn errors_are_an_enum_to_match_on() {
    use qerr::ErrorKind;
    let e = Plan::parse("gptq:bits=99").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Range);
    let what = match e.kind() {
        ErrorKind::Range => "range",
        ErrorKind::UnknownKey | ErrorKind::UnknownMethod => "name",
        _ => "other",
    };
    assert_eq!(what, "range");
    assert_eq!(e.code(), status::E_RANGE); // the raw code stays readable
    assert_eq!(Plan::parse("nosuch").unwrap_err().kind(), ErrorKind::UnknownMethod);
    assert_eq!(Plan::parse("gptq:nokey=1").unwrap_err().kind(), ErrorKind::UnknownKey);
    assert_eq!(Plan::parse("rtn:group_size=0").unwrap_err().kind(), ErrorKind::Range);
    // every status maps to its own kind and back; unknown codes are kept
    let mut seen = std::collections::HashSet::new();
    for code in status::E_NUMERIC..status::OK {
        let k = ErrorKind::from_code(code);
        assert!(!matches!(k, ErrorKind::Other(_)), "code {} has no kind", code);
        assert_eq!(k.code(), code);
        assert!(seen.insert(k));
    }
    assert_eq!(ErrorKind::from_code(-999), ErrorKind::Other(-999));
    assert_eq!(ErrorKind::Other(-999).code(), -999);
}

#[test]
fn context_seed_threads_progress_and_cancel() {
    let (rows, n) = (16, 64);
    let (w, x) = correlated_layer(rows, n, 256, 4);
    let c = calib_for(&x, n);
    let wm = Matrix::f32(&w, rows, n).unwrap();
    let plan = Plan::parse("gptq:bits=4,block_size=8").unwrap();

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut ctx = Context::new().unwrap();
    let s2 = seen.clone();
    ctx.set_threads(2).unwrap().set_seed(11).unwrap()
        .on_progress(move |stage, f| {
            s2.lock().unwrap().push((stage.to_owned(), f));
            false
        })
        .unwrap();
    assert_eq!((ctx.threads(), ctx.seed()), (2, 11));
    let a = ctx.quantize(&plan, wm, Some(&c)).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 4, "{} progress calls", seen.len());
    assert!(seen.windows(2).all(|p| p[0].1 <= p[1].1) && seen.last().unwrap().1 == 1.0);
    let b = qerr::quantize(&plan, wm, Some(&c)).unwrap();
    let (ca, cb) = (a.codes().unwrap(), b.codes().unwrap());
    let differ = ca.iter().zip(&cb).filter(|(x, y)| x != y).count();
    assert!(differ * 100 <= ca.len(), "threads changed {} codes", differ);

    let mut cancel = Context::new().unwrap();
    cancel.on_progress(|_, f| f > 0.3).unwrap();
    assert_eq!(cancel.quantize(&plan, wm, Some(&c)).unwrap_err().code(), status::E_CANCELLED);

    let mut boom = Context::new().unwrap();
    boom.on_progress(|_, _| panic!("from the callback")).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = boom.quantize(&plan, wm, Some(&c));
    }));
    let msg = caught.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>().copied(), Some("from the callback"));
}

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn shared_plan_and_calibration_across_threads() {
    assert_send::<Context>();
    assert_send::<qerr::QuantResult>();
    assert_sync::<Plan>();
    assert_sync::<Calibration>();
    assert_sync::<qerr::QuantResult>();
    let (rows, n) = (16, 64);
    let (w, x) = correlated_layer(rows, n, 256, 6);
    let c = calib_for(&x, n);
    let plan = Plan::parse("gptq:bits=4").unwrap();
    let reference = qerr::quantize(&plan, Matrix::f32(&w, rows, n).unwrap(), Some(&c)).unwrap()
        .codes().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| {
            let mut ctx = Context::new().unwrap();
            ctx.set_threads(1).unwrap();
            ctx.quantize(&plan, Matrix::f32(&w, rows, n).unwrap(), Some(&c)).unwrap()
                .codes().unwrap()
        })).collect();
        for h in handles {
            let codes = h.join().unwrap();
            let differ = codes.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert!(differ * 100 <= codes.len());
        }
    });
}
