//! Model-level API (qerr/model.h): token files, float models, perplexity,
//! whole-model quantization, quantized-model containers. Compiled only when
//! the library found at build time has these functions.
use std::path::Path;
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::result::{QuantResult, ResultView};
use crate::status;
use crate::util::{cpath, cstring, string};

/// Read a token file (little-endian uint32 ids, no header).
pub fn read_tokens(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let p = cpath(path.as_ref())?;
    let (mut ptr, mut n) = (std::ptr::null_mut(), 0i64);
    check(unsafe { ffi::qerr_tokens_read(p.as_ptr(), &mut ptr, &mut n) })?;
    let out = if n > 0 && !ptr.is_null() {
        unsafe { std::slice::from_raw_parts(ptr, n as usize) }.to_vec()
    } else {
        Vec::new()
    };
    unsafe { ffi::qerr_free(ptr as *mut std::os::raw::c_void) };
    Ok(out)
}

/// Perplexity over non-overlapping windows and what it was computed from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    pub mean_nll: f64,
    pub scored: u64,
}

/// A LLaMA-family model in Hugging Face layout, held in float32.
pub struct Model {
    pub(crate) m: NonNull<ffi::qerr_model>,
}

unsafe impl Send for Model {}

impl Model {
    pub fn load(dir: impl AsRef<Path>) -> Result<Model> {
        let d = cpath(dir.as_ref())?;
        let mut m = std::ptr::null_mut();
        check(unsafe { ffi::qerr_model_load(&mut m, d.as_ptr()) })?;
        NonNull::new(m).map(|m| Model { m })
            .ok_or_else(|| Error::new(status::E_INTERNAL, "NULL model"))
    }

    pub fn config_int(&self, key: &str) -> Result<i64> {
        let k = cstring(key)?;
        let mut v = 0;
        check(unsafe { ffi::qerr_model_config_int(self.m.as_ptr(), k.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn config_double(&self, key: &str) -> Result<f64> {
        let k = cstring(key)?;
        let mut v = 0.0;
        check(unsafe { ffi::qerr_model_config_double(self.m.as_ptr(), k.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn tensor_names(&self) -> Vec<String> {
        let n = unsafe { ffi::qerr_model_tensor_count(self.m.as_ptr()) }.max(0);
        (0..n).map(|i| string(unsafe { ffi::qerr_model_tensor_name(self.m.as_ptr(), i) }))
            .collect()
    }

    /// (shape, float32 values) of a weight, by its Hugging Face name.
    pub fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let k = cstring(name)?;
        let mut t = std::ptr::null();
        check(unsafe { ffi::qerr_model_tensor(self.m.as_ptr(), k.as_ptr(), &mut t) })?;
        let mut f = std::ptr::null_mut();
        check(unsafe { ffi::qerr_tensor_to_f32(t, &mut f) })?;
        let out = unsafe {
            let nd = ffi::qerr_tensor_ndim(f).max(0);
            let shape: Vec<usize> = (0..nd).map(|i| ffi::qerr_tensor_dim(f, i).max(0) as usize)
                .collect();
            let n = ffi::qerr_tensor_numel(f).max(0) as usize;
            let data = ffi::qerr_tensor_data(f) as *const f32;
            let values = if n == 0 { Vec::new() } else {
                std::slice::from_raw_parts(data, n).to_vec()
            };
            ffi::qerr_tensor_free(f);
            (shape, values)
        };
        Ok(out)
    }

    /// Perplexity over floor(len / ctx_len) windows (max_windows > 0 caps them).
    pub fn perplexity(&self, ctx: Option<&mut Context>, tokens: &[u32], ctx_len: usize,
                      max_windows: usize) -> Result<Perplexity> {
        let (mut ppl, mut nll, mut scored) = (0.0, 0.0, 0i64);
        let m = self.m.as_ptr();
        let mut call = |c: *mut ffi::qerr_ctx| {
            check(unsafe {
                ffi::qerr_model_perplexity(c, m, tokens.as_ptr(), tokens.len() as i64,
                                           ctx_len as i64, max_windows as i64, &mut ppl,
                                           &mut nll, &mut scored)
            })
        };
        Context::run_opt(ctx, &mut call)?;
        Ok(Perplexity { ppl, mean_nll: nll, scored: scored.max(0) as u64 })
    }

    /// Replace this model's weights by the dequantized tensors of `q`.
    pub fn apply(&mut self, q: &QModel) -> Result<()> {
        check(unsafe { ffi::qerr_model_apply(self.m.as_ptr(), q.q.as_ptr()) })?;
        Ok(())
    }

    /// Write this model with the linear layers quantized in `q` as a GPTQ
    /// checkpoint directory (transformers, vLLM, ExLlamaV2, GPTQModel);
    /// `checkpoint_format` is "gptq" (v1) or "gptq_v2". `Model::load` reads
    /// it back. `dir` must not exist or be empty.
    pub fn export_gptq(&self, q: &QModel, dir: impl AsRef<Path>, checkpoint_format: &str)
                       -> Result<()> {
        let d = cpath(dir.as_ref())?;
        let f = cstring(checkpoint_format)?;
        check(unsafe {
            ffi::qerr_export_gptq(self.m.as_ptr(), q.q.as_ptr(), d.as_ptr(), f.as_ptr())
        })?;
        Ok(())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ffi::qerr_model_free(self.m.as_ptr()) }
    }
}

/// Calibrate and quantize every linear layer of `model` in order. `plan` is
/// the default spec; `overrides` a ';'-separated list of "glob=spec" (spec
/// may be "float"); calibration uses `nsamples` windows of `seqlen` tokens
/// drawn with the context's seed.
pub fn quantize_model(ctx: Option<&mut Context>, model: &Model, plan: &str,
                      overrides: Option<&str>, tokens: &[u32], nsamples: usize, seqlen: usize)
                      -> Result<QModel> {
    let p = cstring(plan)?;
    let o = overrides.map(cstring).transpose()?;
    let mut out = std::ptr::null_mut();
    let mut call = |c: *mut ffi::qerr_ctx| {
        check(unsafe {
            ffi::qerr_model_quantize(c, model.m.as_ptr(), p.as_ptr(),
                                     o.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
                                     tokens.as_ptr(), tokens.len() as i64, nsamples as i64,
                                     seqlen as i64, &mut out)
        })
    };
    Context::run_opt(ctx, &mut call)?;
    QModel::adopt(out)
}

/// Named quantization results plus string metadata.
pub struct QModel {
    pub(crate) q: NonNull<ffi::qerr_qmodel>,
}

unsafe impl Send for QModel {}

impl QModel {
    pub(crate) fn adopt(q: *mut ffi::qerr_qmodel) -> Result<QModel> {
        NonNull::new(q).map(|q| QModel { q })
            .ok_or_else(|| Error::new(status::E_INTERNAL, "NULL quantized model"))
    }

    pub fn new() -> Result<QModel> {
        let mut q = std::ptr::null_mut();
        check(unsafe { ffi::qerr_qmodel_create(&mut q) })?;
        QModel::adopt(q)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<QModel> {
        let p = cpath(path.as_ref())?;
        let mut q = std::ptr::null_mut();
        check(unsafe { ffi::qerr_qmodel_load(&mut q, p.as_ptr()) })?;
        QModel::adopt(q)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = cpath(path.as_ref())?;
        check(unsafe { ffi::qerr_qmodel_save(self.q.as_ptr(), p.as_ptr()) })?;
        Ok(())
    }

    /// Store `r` under `name` (the QModel takes it over, also on failure).
    pub fn add(&mut self, name: &str, r: QuantResult) -> Result<()> {
        let n = cstring(name)?;
        check(unsafe { ffi::qerr_qmodel_add(self.q.as_ptr(), n.as_ptr(), r.into_raw()) })?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        unsafe { ffi::qerr_qmodel_count(self.q.as_ptr()) }.max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn names(&self) -> Vec<String> {
        (0..self.len() as i32)
            .map(|i| string(unsafe { ffi::qerr_qmodel_name(self.q.as_ptr(), i) }))
            .collect()
    }

    /// The result stored under `name` (E_NOT_FOUND when absent).
    pub fn get(&self, name: &str) -> Result<ResultView<'_>> {
        let n = cstring(name)?;
        let mut r = std::ptr::null();
        check(unsafe { ffi::qerr_qmodel_get(self.q.as_ptr(), n.as_ptr(), &mut r) })?;
        ResultView::from_ptr(r)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (cstring(key)?, cstring(value)?);
        check(unsafe { ffi::qerr_qmodel_set_meta(self.q.as_ptr(), k.as_ptr(), v.as_ptr()) })?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Option<String> {
        let k = cstring(key).ok()?;
        let p = unsafe { ffi::qerr_qmodel_meta(self.q.as_ptr(), k.as_ptr()) };
        if p.is_null() { None } else { Some(string(p)) }
    }
}

impl Drop for QModel {
    fn drop(&mut self) {
        unsafe { ffi::qerr_qmodel_free(self.q.as_ptr()) }
    }
}
