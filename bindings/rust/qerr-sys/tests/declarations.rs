//! The raw declarations link against the library, and every QERR_API
//! function of the headers is declared here (names checked against the
//! header text when the source tree is around).
use qerr_sys::*;
use std::ffi::CStr;

#[test]
fn version_matches_the_header() {
    let n = unsafe { qerr_version_number() };
    assert_eq!(n / 10000, QERR_VERSION_MAJOR);
    assert_eq!(n, QERR_VERSION_NUMBER, "library and qerr-sys describe different versions");
    let s = unsafe { CStr::from_ptr(qerr_version_string()) }.to_str().unwrap();
    assert_eq!(s, format!("{}.{}.{}", QERR_VERSION_MAJOR, QERR_VERSION_MINOR, QERR_VERSION_PATCH));
}

#[test]
fn status_strings_are_distinct() {
    let mut seen = std::collections::HashSet::new();
    for code in QERR_E_NUMERIC..=QERR_OK {
        let s = unsafe { CStr::from_ptr(qerr_status_string(code)) }.to_str().unwrap().to_owned();
        assert!(!s.is_empty());
        assert!(seen.insert(s), "two codes share a status string");
    }
}

#[test]
fn raw_calls_round_trip() {
    unsafe {
        let mut ctx = std::ptr::null_mut();
        assert_eq!(qerr_ctx_create(&mut ctx), QERR_OK);
        assert_eq!(qerr_ctx_set_seed(ctx, 42), QERR_OK);
        assert_eq!(qerr_ctx_seed(ctx), 42);
        assert_eq!(qerr_ctx_set_threads(ctx, -3), QERR_E_RANGE);
        assert!(!CStr::from_ptr(qerr_last_error()).to_bytes().is_empty());
        qerr_ctx_free(ctx);
        qerr_ctx_free(std::ptr::null_mut()); // NULL is a no-op
        assert_eq!(qerr_dtype_size(QERR_DTYPE_BF16), 2);
        assert_eq!(qerr_dtype_size(QERR_DTYPE_F32), 4);
    }
}

/// Taking every function's address makes the linker resolve each one.
#[test]
fn every_function_resolves() {
    let core: &[*const ()] = &[
        qerr_version_number as *const (), qerr_version_string as *const (),
        qerr_status_string as *const (), qerr_last_error as *const (),
        qerr_ctx_create as *const (), qerr_ctx_free as *const (),
        qerr_ctx_set_threads as *const (), qerr_ctx_threads as *const (),
        qerr_ctx_set_seed as *const (), qerr_ctx_seed as *const (),
        qerr_ctx_set_log as *const (), qerr_ctx_set_progress as *const (),
        qerr_dtype_size as *const (), qerr_dtype_name as *const (),
        qerr_tensor_create as *const (), qerr_tensor_from_data as *const (),
        qerr_tensor_wrap as *const (), qerr_tensor_free as *const (),
        qerr_tensor_ndim as *const (), qerr_tensor_dim as *const (),
        qerr_tensor_dtype as *const (), qerr_tensor_numel as *const (),
        qerr_tensor_nbytes as *const (), qerr_tensor_data as *const (),
        qerr_tensor_to_f32 as *const (), qerr_calib_create as *const (),
        qerr_calib_free as *const (), qerr_calib_add as *const (),
        qerr_calib_add_f32 as *const (), qerr_calib_from_gram as *const (),
        qerr_calib_merge as *const (), qerr_calib_set_reservoir as *const (),
        qerr_calib_in_features as *const (), qerr_calib_nsamples as *const (),
        qerr_calib_gram as *const (), qerr_calib_reservoir as *const (),
        qerr_calib_save as *const (), qerr_calib_load as *const (),
        qerr_method_count as *const (), qerr_method_name as *const (),
        qerr_method_summary as *const (), qerr_method_param_count as *const (),
        qerr_method_scopes as *const (),
        qerr_method_param_info as *const (), qerr_plan_create as *const (),
        qerr_plan_parse as *const (), qerr_plan_clone as *const (),
        qerr_plan_free as *const (), qerr_plan_method as *const (),
        qerr_plan_set_int as *const (), qerr_plan_set_double as *const (),
        qerr_plan_set as *const (), qerr_plan_get_int as *const (),
        qerr_plan_get_double as *const (), qerr_plan_get_string as *const (),
        qerr_plan_to_string as *const (), qerr_quantize as *const (),
        qerr_result_free as *const (), qerr_result_rows as *const (),
        qerr_result_cols as *const (), qerr_result_bits as *const (),
        qerr_result_group_size as *const (), qerr_result_groups as *const (),
        qerr_result_plan as *const (), qerr_result_codes as *const (),
        qerr_result_packed_size as *const (), qerr_result_packed as *const (),
        qerr_result_scales as *const (), qerr_result_zeros as *const (),
        qerr_result_g_idx as *const (), qerr_result_outlier_count as *const (),
        qerr_result_outliers as *const (), qerr_result_extra_count as *const (),
        qerr_result_extra as *const (), qerr_result_dequantize as *const (),
        qerr_result_bits_per_weight as *const (), qerr_result_diag as *const (),
        qerr_result_diag_count as *const (), qerr_result_diag_at as *const (),
        qerr_layer_error as *const (),
    ];
    assert!(core.iter().all(|p| !p.is_null()));
    #[cfg(qerr_model)]
    {
        let model: &[*const ()] = &[
            qerr_tokens_read as *const (), qerr_free as *const (),
            qerr_model_load as *const (), qerr_model_free as *const (),
            qerr_model_config_int as *const (), qerr_model_config_double as *const (),
            qerr_model_tensor_count as *const (), qerr_model_tensor_name as *const (),
            qerr_model_tensor as *const (), qerr_model_perplexity as *const (),
            qerr_qmodel_create as *const (), qerr_qmodel_free as *const (),
            qerr_qmodel_add as *const (), qerr_qmodel_count as *const (),
            qerr_qmodel_name as *const (), qerr_qmodel_get as *const (),
            qerr_qmodel_set_meta as *const (), qerr_qmodel_meta as *const (),
            qerr_qmodel_save as *const (), qerr_qmodel_load as *const (),
            qerr_model_quantize as *const (), qerr_model_apply as *const (),
        ];
        assert!(model.iter().all(|p| !p.is_null()));
    }
}

/// Every function the headers export is declared in src/lib.rs.
#[test]
fn headers_and_declarations_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../include");
    let headers = [root.join("qerr.h"), root.join("qerr/model.h"), root.join("qerr/export.h")];
    if !headers[0].exists() {
        eprintln!("skip: headers not found at {}", root.display());
        return;
    }
    let decls = include_str!("../src/lib.rs");
    let mut count = 0;
    for h in &headers {
        let text = std::fs::read_to_string(h).unwrap();
        for line in text.lines().filter(|l| l.starts_with("QERR_API ")) {
            let name = line.split('(').next().unwrap().rsplit(|c: char| c == ' ' || c == '*')
                .next().unwrap();
            assert!(decls.contains(&format!("pub fn {}(", name)), "{} is not declared", name);
            count += 1;
        }
    }
    assert!(count > 90, "only {} QERR_API functions found in the headers", count);
}
