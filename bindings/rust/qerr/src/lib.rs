//! Safe Rust wrapper of libqerr: post-training quantization of LLM weights.
//!
//! Handles own their C objects and free them on drop; every fallible call
//! returns [`Result`] with the status code and the library's message; data
//! goes in as slices and comes out as `Vec`s.
//!
//! ```no_run
//! # fn main() -> qerr::Result<()> {
//! let (rows, cols) = (64, 128);
//! let w = vec![0.5f32; rows * cols];
//! let x = vec![1.0f32; 256 * cols];
//! let mut calib = qerr::Calibration::new(cols)?;
//! calib.add(&x)?;
//! let plan = qerr::Plan::parse("gptq:bits=4,group_size=64")?;
//! let r = qerr::quantize(&plan, qerr::Matrix::f32(&w, rows, cols)?, Some(&calib))?;
//! println!("{} bits/weight, error {}", r.bits_per_weight(), r.diag("layer_error")?);
//! # Ok(()) }
//! ```
//!
//! Thread safety follows include/qerr.h: distinct handles may be used from
//! distinct threads ([`Send`]); plans, calibration sets and results are only
//! read by `&self` methods and by quantization, so they are also [`Sync`].
//! A [`Context`] holds `FnMut` callbacks and is `Send` only.

mod calib;
mod context;
mod error;
#[cfg(qerr_model)]
mod export;
#[cfg(qerr_model)]
mod model;
mod plan;
mod result;
mod tensor;
#[cfg(qerr_model)]
mod tokenizer;
mod util;

pub use calib::Calibration;
pub use context::Context;
pub use error::{Error, ErrorKind, Result};
#[cfg(qerr_model)]
pub use model::{quantize_model, read_tokens, Model, Perplexity, QModel};
#[cfg(qerr_model)]
pub use export::{gguf_quantize, gguf_save, gguf_tensor_type};
pub use plan::{method_params, method_summary, methods, ParamInfo, ParamType, Plan};
pub use result::{Extra, Outliers, QuantResult, ResultView};
pub use tensor::{Dtype, Matrix};
#[cfg(qerr_model)]
pub use tokenizer::Tokenizer;

pub use qerr_sys as sys;

use qerr_sys as ffi;

/// Status codes of qerr.h, as plain integers (stable numbers).
pub mod status {
    pub use qerr_sys::{
        QERR_E_ABI as E_ABI, QERR_E_CANCELLED as E_CANCELLED, QERR_E_CHECKSUM as E_CHECKSUM,
        QERR_E_FORMAT as E_FORMAT, QERR_E_INTERNAL as E_INTERNAL,
        QERR_E_INVALID_ARG as E_INVALID_ARG, QERR_E_IO as E_IO, QERR_E_NOMEM as E_NOMEM,
        QERR_E_NONFINITE as E_NONFINITE, QERR_E_NOT_FOUND as E_NOT_FOUND,
        QERR_E_NOT_PD as E_NOT_PD, QERR_E_NUMERIC as E_NUMERIC, QERR_E_RANGE as E_RANGE,
        QERR_E_SHAPE as E_SHAPE, QERR_E_UNKNOWN_KEY as E_UNKNOWN_KEY,
        QERR_E_UNKNOWN_METHOD as E_UNKNOWN_METHOD, QERR_E_UNSUPPORTED as E_UNSUPPORTED,
        QERR_OK as OK,
    };
}

/// Version string of the loaded library, e.g. "0.1.0".
pub fn version() -> String {
    util::string(unsafe { ffi::qerr_version_string() })
}

/// Run-time version number (major * 10000 + minor * 100 + patch).
pub fn version_number() -> u32 {
    unsafe { ffi::qerr_version_number() }
}

/// Quantize `weight` [rows, cols] with `plan` and default settings (all
/// CPUs, seed 0). `calib` may be `None` for methods that need no data.
pub fn quantize(plan: &Plan, weight: Matrix<'_>, calib: Option<&Calibration>)
                -> Result<QuantResult> {
    result::quantize_with(std::ptr::null_mut(), plan, weight, calib)
}

/// tr((W - Wq) H (W - Wq)^T) / tr(W H W^T) with the H of `calib`.
pub fn layer_error(weight: Matrix<'_>, dequantized: Matrix<'_>, calib: &Calibration)
                   -> Result<f64> {
    let w = weight.borrow()?;
    let q = dequantized.borrow()?;
    let mut out = 0.0;
    error::check(unsafe { ffi::qerr_layer_error(w.ptr(), q.ptr(), calib.ptr(), &mut out) })?;
    Ok(out)
}
