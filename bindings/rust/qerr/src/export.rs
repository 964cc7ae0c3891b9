//! Export API (qerr/export.h): a model, quantized or not, as a GGUF file for
//! llama.cpp. `type_` is a llama-quantize file type ("F32", "F16", "Q8_0",
//! "Q4_0", "Q4_K_M", ...); `mix` is "ftype" (None: llama-quantize's
//! per-tensor rules), "pure" or "layers". A GGUF file loads back with
//! `Model::load(path)`.
use std::os::raw::c_char;
use std::path::Path;

use qerr_sys as ffi;

use crate::context::Context;
use crate::error::{check, Result};
use crate::model::{Model, QModel};
use crate::util::{cpath, cstring, string};

fn opt_ptr(s: &Option<std::ffi::CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// The ggml type ("Q6_K", "F16", ...) tensor `name` gets in such a file.
pub fn gguf_tensor_type(model: &Model, name: &str, type_: &str, mix: Option<&str>)
                        -> Result<String> {
    let (t, n, x) = (cstring(type_)?, cstring(name)?, mix.map(cstring).transpose()?);
    let mut buf = [0 as c_char; 32];
    check(unsafe {
        ffi::qerr_gguf_tensor_type(model.m.as_ptr(), t.as_ptr(), opt_ptr(&x), n.as_ptr(),
                                   buf.as_mut_ptr(), buf.len())
    })?;
    Ok(string(buf.as_ptr()))
}

/// The quantized tensors of a GGUF file type: the true-sequential pipeline
/// with the ggml method on each tensor's type (an empty QModel for F32/F16).
#[allow(clippy::too_many_arguments)]
pub fn gguf_quantize(ctx: Option<&mut Context>, model: &Model, type_: &str, mix: Option<&str>,
                     ggml_opts: Option<&str>, tokens: &[u32], nsamples: usize, seqlen: usize)
                     -> Result<QModel> {
    let t = cstring(type_)?;
    let x = mix.map(cstring).transpose()?;
    let o = ggml_opts.map(cstring).transpose()?;
    let mut out = std::ptr::null_mut();
    let mut call = |c: *mut ffi::qerr_ctx| {
        check(unsafe {
            ffi::qerr_gguf_quantize(c, model.m.as_ptr(), t.as_ptr(), opt_ptr(&x), opt_ptr(&o),
                                    tokens.as_ptr(), tokens.len() as i64, nsamples as i64,
                                    seqlen as i64, &mut out)
        })
    };
    Context::run_opt(ctx, &mut call)?;
    QModel::adopt(out)
}

/// Write `model` (with `q` from gguf_quantize for quantized types) as a GGUF
/// v3 file; nothing appears at `path` on error.
pub fn gguf_save(model: &Model, q: Option<&QModel>, type_: &str, mix: Option<&str>,
                 path: impl AsRef<Path>) -> Result<()> {
    let (t, x, p) = (cstring(type_)?, mix.map(cstring).transpose()?, cpath(path.as_ref())?);
    check(unsafe {
        ffi::qerr_gguf_save(model.m.as_ptr(), q.map_or(std::ptr::null(), |q| q.q.as_ptr()),
                            t.as_ptr(), opt_ptr(&x), p.as_ptr())
    })?;
    Ok(())
}
