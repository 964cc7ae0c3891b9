//! Raw declarations of every function of libqerr's public headers
//! (`qerr.h` and `qerr/model.h`). Opaque handles are zero-sized `#[repr(C)]`
//! structs used only behind pointers; C enums are integer constants (a value
//! this crate does not know stays a valid integer). Everything here is
//! `unsafe`; the `qerr` crate is the safe wrapper.
#![allow(non_camel_case_types)]

use std::marker::{PhantomData, PhantomPinned};
use std::os::raw::{c_char, c_double, c_int, c_uint, c_void};

macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _p: [u8; 0],
            _m: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}
opaque!(qerr_ctx, qerr_tensor, qerr_calib, qerr_plan, qerr_result, qerr_model, qerr_qmodel,
        qerr_tokenizer);

// ---- version ---------------------------------------------------------------
pub const QERR_VERSION_MAJOR: c_uint = 0;
pub const QERR_VERSION_MINOR: c_uint = 1;
pub const QERR_VERSION_PATCH: c_uint = 0;
pub const QERR_VERSION_NUMBER: c_uint =
    QERR_VERSION_MAJOR * 10000 + QERR_VERSION_MINOR * 100 + QERR_VERSION_PATCH;

// ---- status codes (qerr_status) --------------------------------------------
pub const QERR_OK: c_int = 0;
pub const QERR_E_INVALID_ARG: c_int = -1;
pub const QERR_E_SHAPE: c_int = -2;
pub const QERR_E_NOMEM: c_int = -3;
pub const QERR_E_NONFINITE: c_int = -4;
pub const QERR_E_NOT_PD: c_int = -5;
pub const QERR_E_IO: c_int = -6;
pub const QERR_E_FORMAT: c_int = -7;
pub const QERR_E_UNKNOWN_METHOD: c_int = -8;
pub const QERR_E_UNKNOWN_KEY: c_int = -9;
pub const QERR_E_RANGE: c_int = -10;
pub const QERR_E_UNSUPPORTED: c_int = -11;
pub const QERR_E_CANCELLED: c_int = -12;
pub const QERR_E_CHECKSUM: c_int = -13;
pub const QERR_E_ABI: c_int = -14;
pub const QERR_E_INTERNAL: c_int = -15;
pub const QERR_E_NOT_FOUND: c_int = -16;
pub const QERR_E_NUMERIC: c_int = -17;

// ---- log levels, dtypes, parameter types -----------------------------------
pub const QERR_SCOPE_LAYER: c_int = 1;
pub const QERR_SCOPE_BLOCK: c_int = 2;
pub const QERR_LOG_ERROR: c_int = 1;
pub const QERR_LOG_WARN: c_int = 2;
pub const QERR_LOG_INFO: c_int = 3;
pub const QERR_LOG_DEBUG: c_int = 4;
/// qerr_model_quantize_file: continue an interrupted run.
pub const QERR_QUANTIZE_RESUME: c_uint = 1;

pub const QERR_DTYPE_F32: c_int = 1;
pub const QERR_DTYPE_F16: c_int = 2;
pub const QERR_DTYPE_BF16: c_int = 3;

pub const QERR_MAX_DIMS: usize = 4;

pub const QERR_PARAM_INT: c_int = 1;
pub const QERR_PARAM_DOUBLE: c_int = 2;
pub const QERR_PARAM_BOOL: c_int = 3;
pub const QERR_PARAM_CHOICE: c_int = 4;

pub type qerr_log_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, level: c_int, message: *const c_char)>;
pub type qerr_progress_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, stage: *const c_char, fraction: c_double) -> c_int>;

extern "C" {
    // version and errors
    pub fn qerr_version_number() -> c_uint;
    pub fn qerr_version_string() -> *const c_char;
    pub fn qerr_status_string(status: c_int) -> *const c_char;
    pub fn qerr_last_error() -> *const c_char;

    // context
    pub fn qerr_ctx_create(out: *mut *mut qerr_ctx) -> c_int;
    pub fn qerr_ctx_free(ctx: *mut qerr_ctx);
    pub fn qerr_ctx_set_threads(ctx: *mut qerr_ctx, threads: c_int) -> c_int;
    pub fn qerr_ctx_threads(ctx: *const qerr_ctx) -> c_int;
    pub fn qerr_ctx_set_seed(ctx: *mut qerr_ctx, seed: u64) -> c_int;
    pub fn qerr_ctx_seed(ctx: *const qerr_ctx) -> u64;
    pub fn qerr_ctx_set_log(ctx: *mut qerr_ctx, f: qerr_log_fn, user: *mut c_void,
                            max_level: c_int) -> c_int;
    pub fn qerr_ctx_set_progress(ctx: *mut qerr_ctx, f: qerr_progress_fn, user: *mut c_void)
                                 -> c_int;
    pub fn qerr_ctx_set_max_memory(ctx: *mut qerr_ctx, bytes: u64) -> c_int;
    pub fn qerr_ctx_max_memory(ctx: *const qerr_ctx) -> u64;

    // tensors
    pub fn qerr_dtype_size(dtype: c_int) -> usize;
    pub fn qerr_dtype_name(dtype: c_int) -> *const c_char;
    pub fn qerr_tensor_create(out: *mut *mut qerr_tensor, dtype: c_int, ndim: c_int,
                              shape: *const i64) -> c_int;
    pub fn qerr_tensor_from_data(out: *mut *mut qerr_tensor, dtype: c_int, ndim: c_int,
                                 shape: *const i64, data: *const c_void) -> c_int;
    pub fn qerr_tensor_wrap(out: *mut *mut qerr_tensor, dtype: c_int, ndim: c_int,
                            shape: *const i64, data: *mut c_void) -> c_int;
    pub fn qerr_tensor_free(t: *mut qerr_tensor);
    pub fn qerr_tensor_ndim(t: *const qerr_tensor) -> c_int;
    pub fn qerr_tensor_dim(t: *const qerr_tensor, i: c_int) -> i64;
    pub fn qerr_tensor_dtype(t: *const qerr_tensor) -> c_int;
    pub fn qerr_tensor_numel(t: *const qerr_tensor) -> i64;
    pub fn qerr_tensor_nbytes(t: *const qerr_tensor) -> usize;
    pub fn qerr_tensor_data(t: *const qerr_tensor) -> *mut c_void;
    pub fn qerr_tensor_to_f32(t: *const qerr_tensor, out: *mut *mut qerr_tensor) -> c_int;

    // calibration sets
    pub fn qerr_calib_create(out: *mut *mut qerr_calib, in_features: i64) -> c_int;
    pub fn qerr_calib_free(c: *mut qerr_calib);
    pub fn qerr_calib_add(c: *mut qerr_calib, rows: *const qerr_tensor) -> c_int;
    pub fn qerr_calib_add_f32(c: *mut qerr_calib, rows: *const f32, nrows: i64) -> c_int;
    pub fn qerr_calib_from_gram(out: *mut *mut qerr_calib, gram: *const f64, n: i64,
                                nsamples: i64) -> c_int;
    pub fn qerr_calib_merge(dst: *mut qerr_calib, src: *const qerr_calib) -> c_int;
    pub fn qerr_calib_set_reservoir(c: *mut qerr_calib, max_rows: i64, seed: u64) -> c_int;
    pub fn qerr_calib_in_features(c: *const qerr_calib) -> i64;
    pub fn qerr_calib_nsamples(c: *const qerr_calib) -> i64;
    pub fn qerr_calib_gram(c: *const qerr_calib, out: *mut f64, n: i64) -> c_int;
    pub fn qerr_calib_reservoir(c: *const qerr_calib, rows: *mut *const f32, nrows: *mut i64)
                                -> c_int;
    pub fn qerr_calib_save(c: *const qerr_calib, path: *const c_char) -> c_int;
    pub fn qerr_calib_load(out: *mut *mut qerr_calib, path: *const c_char) -> c_int;

    // methods and plans
    pub fn qerr_method_count() -> c_int;
    pub fn qerr_method_name(index: c_int) -> *const c_char;
    pub fn qerr_method_summary(method: *const c_char) -> *const c_char;
    pub fn qerr_method_param_count(method: *const c_char) -> c_int;
    pub fn qerr_method_scopes(method: *const c_char) -> c_int;
    pub fn qerr_method_param_info(method: *const c_char, index: c_int, key: *mut *const c_char,
                                  type_: *mut c_int, default_value: *mut *const c_char,
                                  min: *mut c_double, max: *mut c_double,
                                  choices: *mut *const c_char, help: *mut *const c_char) -> c_int;
    pub fn qerr_plan_create(out: *mut *mut qerr_plan, method: *const c_char) -> c_int;
    pub fn qerr_plan_parse(out: *mut *mut qerr_plan, spec: *const c_char) -> c_int;
    pub fn qerr_plan_clone(p: *const qerr_plan, out: *mut *mut qerr_plan) -> c_int;
    pub fn qerr_plan_free(p: *mut qerr_plan);
    pub fn qerr_plan_method(p: *const qerr_plan) -> *const c_char;
    pub fn qerr_plan_set_int(p: *mut qerr_plan, key: *const c_char, value: i64) -> c_int;
    pub fn qerr_plan_set_double(p: *mut qerr_plan, key: *const c_char, value: c_double) -> c_int;
    pub fn qerr_plan_set(p: *mut qerr_plan, key: *const c_char, value: *const c_char) -> c_int;
    pub fn qerr_plan_get_int(p: *const qerr_plan, key: *const c_char, value: *mut i64) -> c_int;
    pub fn qerr_plan_get_double(p: *const qerr_plan, key: *const c_char, value: *mut c_double)
                                -> c_int;
    pub fn qerr_plan_get_string(p: *const qerr_plan, key: *const c_char, buf: *mut c_char,
                                cap: usize) -> c_int;
    pub fn qerr_plan_to_string(p: *const qerr_plan, buf: *mut c_char, cap: usize,
                               needed: *mut usize) -> c_int;

    // quantization and results
    pub fn qerr_quantize(ctx: *mut qerr_ctx, plan: *const qerr_plan, weight: *const qerr_tensor,
                         calib: *const qerr_calib, out: *mut *mut qerr_result) -> c_int;
    pub fn qerr_result_free(r: *mut qerr_result);
    pub fn qerr_result_rows(r: *const qerr_result) -> i64;
    pub fn qerr_result_cols(r: *const qerr_result) -> i64;
    pub fn qerr_result_bits(r: *const qerr_result) -> c_int;
    pub fn qerr_result_group_size(r: *const qerr_result) -> i64;
    pub fn qerr_result_groups(r: *const qerr_result) -> i64;
    pub fn qerr_result_plan(r: *const qerr_result) -> *const c_char;
    pub fn qerr_result_codes(r: *const qerr_result, out: *mut u8, cap: usize) -> c_int;
    pub fn qerr_result_packed_size(r: *const qerr_result) -> usize;
    pub fn qerr_result_packed(r: *const qerr_result, out: *mut u8, cap: usize) -> c_int;
    pub fn qerr_result_scales(r: *const qerr_result, out: *mut f32, count: usize) -> c_int;
    pub fn qerr_result_zeros(r: *const qerr_result, out: *mut i32, count: usize) -> c_int;
    pub fn qerr_result_mins(r: *const qerr_result, out: *mut f32, count: usize) -> c_int;
    pub fn qerr_result_g_idx(r: *const qerr_result, out: *mut i32, count: usize) -> c_int;
    pub fn qerr_result_outlier_count(r: *const qerr_result) -> i64;
    pub fn qerr_result_outliers(r: *const qerr_result, rows: *mut i32, cols: *mut i32,
                                values: *mut f32, count: usize) -> c_int;
    pub fn qerr_result_extra_count(r: *const qerr_result) -> c_int;
    pub fn qerr_result_extra(r: *const qerr_result, index: c_int, name: *mut *const c_char,
                             ndim: *mut c_int, shape: *mut i64, data: *mut *const f32) -> c_int;
    pub fn qerr_result_dequantize(r: *const qerr_result, out: *mut f32, count: usize) -> c_int;
    pub fn qerr_result_bits_per_weight(r: *const qerr_result) -> c_double;
    pub fn qerr_result_diag(r: *const qerr_result, name: *const c_char, value: *mut c_double)
                            -> c_int;
    pub fn qerr_result_diag_count(r: *const qerr_result) -> c_int;
    pub fn qerr_result_diag_at(r: *const qerr_result, index: c_int, name: *mut *const c_char,
                               value: *mut c_double) -> c_int;
    pub fn qerr_layer_error(weight: *const qerr_tensor, dequantized: *const qerr_tensor,
                            calib: *const qerr_calib, out: *mut c_double) -> c_int;

    // model level (qerr/model.h)
    pub fn qerr_tokens_read(path: *const c_char, tokens: *mut *mut u32, count: *mut i64) -> c_int;
    pub fn qerr_free(p: *mut c_void);
    pub fn qerr_model_load(out: *mut *mut qerr_model, dir: *const c_char) -> c_int;
    pub fn qerr_model_free(m: *mut qerr_model);
    pub fn qerr_model_set_streaming(m: *mut qerr_model, on: c_int) -> c_int;
    pub fn qerr_model_streaming(m: *const qerr_model) -> c_int;
    pub fn qerr_model_param_count(m: *const qerr_model) -> i64;
    pub fn qerr_model_config_int(m: *const qerr_model, key: *const c_char, value: *mut i64)
                                 -> c_int;
    pub fn qerr_model_config_double(m: *const qerr_model, key: *const c_char,
                                    value: *mut c_double) -> c_int;
    pub fn qerr_model_tensor_count(m: *const qerr_model) -> c_int;
    pub fn qerr_model_tensor_name(m: *const qerr_model, index: c_int) -> *const c_char;
    pub fn qerr_model_tensor(m: *const qerr_model, name: *const c_char,
                             out: *mut *const qerr_tensor) -> c_int;
    pub fn qerr_model_perplexity(ctx: *mut qerr_ctx, m: *const qerr_model, tokens: *const u32,
                                 count: i64, ctx_len: i64, max_windows: i64, ppl: *mut c_double,
                                 mean_nll: *mut c_double, scored: *mut i64) -> c_int;
    pub fn qerr_qmodel_create(out: *mut *mut qerr_qmodel) -> c_int;
    pub fn qerr_qmodel_free(q: *mut qerr_qmodel);
    pub fn qerr_qmodel_add(q: *mut qerr_qmodel, name: *const c_char, r: *mut qerr_result) -> c_int;
    pub fn qerr_qmodel_count(q: *const qerr_qmodel) -> c_int;
    pub fn qerr_qmodel_name(q: *const qerr_qmodel, index: c_int) -> *const c_char;
    pub fn qerr_qmodel_get(q: *const qerr_qmodel, name: *const c_char,
                           out: *mut *const qerr_result) -> c_int;
    pub fn qerr_qmodel_set_meta(q: *mut qerr_qmodel, key: *const c_char, value: *const c_char)
                                -> c_int;
    pub fn qerr_qmodel_meta(q: *const qerr_qmodel, key: *const c_char) -> *const c_char;
    pub fn qerr_qmodel_save(q: *const qerr_qmodel, path: *const c_char) -> c_int;
    pub fn qerr_qmodel_load(out: *mut *mut qerr_qmodel, path: *const c_char) -> c_int;
    pub fn qerr_model_quantize(ctx: *mut qerr_ctx, m: *const qerr_model, plan: *const c_char,
                               overrides: *const c_char, tokens: *const u32, count: i64,
                               nsamples: i64, seqlen: i64, out: *mut *mut qerr_qmodel) -> c_int;
    pub fn qerr_model_quantize_file(ctx: *mut qerr_ctx, m: *const qerr_model,
                                    plan: *const c_char, overrides: *const c_char,
                                    tokens: *const u32, count: i64, nsamples: i64, seqlen: i64,
                                    meta: *const *const c_char, path: *const c_char,
                                    flags: c_uint) -> c_int;
    pub fn qerr_model_quantize_estimate(ctx: *mut qerr_ctx, m: *const qerr_model,
                                        plan: *const c_char, nsamples: i64, seqlen: i64,
                                        bytes: *mut u64, bytes_spilled: *mut u64,
                                        seconds: *mut c_double) -> c_int;
    pub fn qerr_model_apply(m: *mut qerr_model, q: *const qerr_qmodel) -> c_int;

    // export (qerr/export.h)
    pub fn qerr_gguf_tensor_type(m: *const qerr_model, type_: *const c_char, mix: *const c_char,
                                 name: *const c_char, buf: *mut c_char, cap: usize) -> c_int;
    pub fn qerr_gguf_quantize(ctx: *mut qerr_ctx, m: *const qerr_model, type_: *const c_char,
                              mix: *const c_char, ggml_opts: *const c_char, tokens: *const u32,
                              count: i64, nsamples: i64, seqlen: i64,
                              out: *mut *mut qerr_qmodel) -> c_int;
    pub fn qerr_gguf_save(m: *const qerr_model, q: *const qerr_qmodel, type_: *const c_char,
                          mix: *const c_char, path: *const c_char) -> c_int;
    pub fn qerr_export_gptq(m: *const qerr_model, q: *const qerr_qmodel, dir: *const c_char,
                            checkpoint_format: *const c_char) -> c_int;
    pub fn qerr_export_gptq_ctx(ctx: *mut qerr_ctx, m: *const qerr_model, q: *const qerr_qmodel,
                                dir: *const c_char, checkpoint_format: *const c_char) -> c_int;

    // tokenizers (qerr/tokenizer.h)
    pub fn qerr_tokenizer_load(out: *mut *mut qerr_tokenizer, path: *const c_char) -> c_int;
    pub fn qerr_tokenizer_free(t: *mut qerr_tokenizer);
    pub fn qerr_tokenizer_vocab_size(t: *const qerr_tokenizer) -> i64;
    pub fn qerr_tokenizer_bos_id(t: *const qerr_tokenizer) -> i64;
    pub fn qerr_tokenizer_eos_id(t: *const qerr_tokenizer) -> i64;
    pub fn qerr_tokenizer_encode(t: *const qerr_tokenizer, text: *const c_char, len: usize,
                                 flags: c_uint, ids: *mut *mut u32, count: *mut i64) -> c_int;
    pub fn qerr_tokenizer_decode(t: *const qerr_tokenizer, ids: *const u32, count: i64,
                                 flags: c_uint, text: *mut *mut c_char, len: *mut usize) -> c_int;
    pub fn qerr_tokenizer_token_text(t: *const qerr_tokenizer, id: u32, len: *mut usize,
                                     special: *mut c_int) -> *const c_char;
    pub fn qerr_tokenizer_encode_file(t: *const qerr_tokenizer, path: *const c_char, flags: c_uint,
                                      ids: *mut *mut u32, count: *mut i64, text_bytes: *mut i64)
                                      -> c_int;
}

/// Flags of qerr_tokenizer_encode / qerr_tokenizer_encode_file / _decode.
pub const QERR_TOKENIZE_ADD_SPECIAL: c_uint = 1;
pub const QERR_TOKENIZE_PARSE_SPECIAL: c_uint = 2;
pub const QERR_DETOKENIZE_SKIP_SPECIAL: c_uint = 1;
