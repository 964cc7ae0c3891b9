//! Quantization results: an owned QuantResult, or a ResultView borrowed
//! from a quantized model. Every accessor returns a fresh copy.
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::raw::c_int;
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::calib::Calibration;
use crate::error::{check, Error, Result};
use crate::plan::Plan;
use crate::status;
use crate::tensor::Matrix;
use crate::util::{cstring, product, string};

/// Sparse full-precision part (W ~= dequant(Q) + S), COO sorted by (row, col).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outliers {
    pub rows: Vec<i32>,
    pub cols: Vec<i32>,
    pub values: Vec<f32>,
}

/// A learned side tensor (e.g. a transform applied at run time).
#[derive(Clone, Debug, PartialEq)]
pub struct Extra {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Read access to a result that someone else owns (valid for 'a).
pub struct ResultView<'a> {
    r: NonNull<ffi::qerr_result>,
    _owner: PhantomData<&'a ()>,
}

// Results are only read through a view; qerr.h allows that from many threads.
unsafe impl Send for ResultView<'_> {}
unsafe impl Sync for ResultView<'_> {}

impl<'a> ResultView<'a> {
    pub(crate) fn from_ptr(r: *const ffi::qerr_result) -> Result<ResultView<'a>> {
        NonNull::new(r as *mut ffi::qerr_result)
            .map(|r| ResultView { r, _owner: PhantomData })
            .ok_or_else(|| Error::new(status::E_INTERNAL, "NULL result"))
    }

    fn p(&self) -> *const ffi::qerr_result {
        self.r.as_ptr()
    }

    pub fn rows(&self) -> usize {
        unsafe { ffi::qerr_result_rows(self.p()) }.max(0) as usize
    }

    pub fn cols(&self) -> usize {
        unsafe { ffi::qerr_result_cols(self.p()) }.max(0) as usize
    }

    pub fn bits(&self) -> u32 {
        unsafe { ffi::qerr_result_bits(self.p()) }.max(0) as u32
    }

    /// Columns per group (equals cols for a per-row grid).
    pub fn group_size(&self) -> usize {
        unsafe { ffi::qerr_result_group_size(self.p()) }.max(0) as usize
    }

    /// Groups per row: scales and zeros are rows x groups.
    pub fn groups(&self) -> usize {
        unsafe { ffi::qerr_result_groups(self.p()) }.max(0) as usize
    }

    /// Canonical spec of the plan that produced this result.
    pub fn plan(&self) -> String {
        string(unsafe { ffi::qerr_result_plan(self.p()) })
    }

    /// Codes, one byte per weight, rows x cols row-major.
    pub fn codes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; product("codes", &[self.rows(), self.cols()])?];
        check(unsafe { ffi::qerr_result_codes(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    /// Bit-packed codes: rows start on a byte, codes LSB-first;
    /// ceil(cols * bits / 8) bytes per row.
    pub fn packed(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; unsafe { ffi::qerr_result_packed_size(self.p()) }];
        check(unsafe { ffi::qerr_result_packed(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    pub fn scales(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; product("scales", &[self.rows(), self.groups()])?];
        check(unsafe { ffi::qerr_result_scales(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    pub fn zeros(&self) -> Result<Vec<i32>> {
        let mut out = vec![0i32; product("zeros", &[self.rows(), self.groups()])?];
        check(unsafe { ffi::qerr_result_zeros(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    /// Per-group offsets m (w = scale * (code - zero) - m); all 0 when none.
    pub fn mins(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; product("mins", &[self.rows(), self.groups()])?];
        check(unsafe { ffi::qerr_result_mins(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    /// Group of each input column.
    pub fn g_idx(&self) -> Result<Vec<i32>> {
        let mut out = vec![0i32; self.cols()];
        check(unsafe { ffi::qerr_result_g_idx(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    pub fn outliers(&self) -> Result<Outliers> {
        let n = unsafe { ffi::qerr_result_outlier_count(self.p()) }.max(0) as usize;
        let mut o = Outliers { rows: vec![0; n], cols: vec![0; n], values: vec![0.0; n] };
        check(unsafe {
            ffi::qerr_result_outliers(self.p(), o.rows.as_mut_ptr(), o.cols.as_mut_ptr(),
                                      o.values.as_mut_ptr(), n)
        })?;
        Ok(o)
    }

    pub fn extras(&self) -> Result<Vec<Extra>> {
        let n = unsafe { ffi::qerr_result_extra_count(self.p()) }.max(0);
        let mut out = Vec::new();
        for i in 0..n {
            let (mut name, mut ndim, mut data) = (std::ptr::null(), 0 as c_int, std::ptr::null());
            let mut shape = [0i64; ffi::QERR_MAX_DIMS];
            check(unsafe {
                ffi::qerr_result_extra(self.p(), i, &mut name, &mut ndim, shape.as_mut_ptr(),
                                       &mut data)
            })?;
            let shape: Vec<usize> =
                shape[..ndim.max(0) as usize].iter().map(|&d| d.max(0) as usize).collect();
            let len = product("extra", &shape)?;
            let values = if len == 0 || data.is_null() { Vec::new() } else {
                unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
            };
            out.push(Extra { name: string(name), shape, data: values });
        }
        Ok(out)
    }

    /// The quantized weight as float32, rows x cols (grid and outliers).
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; product("dequantize", &[self.rows(), self.cols()])?];
        check(unsafe { ffi::qerr_result_dequantize(self.p(), out.as_mut_ptr(), out.len()) })?;
        Ok(out)
    }

    pub fn bits_per_weight(&self) -> f64 {
        unsafe { ffi::qerr_result_bits_per_weight(self.p()) }
    }

    /// One diagnostic ("layer_error", "damp", "seconds", ...).
    pub fn diag(&self, name: &str) -> Result<f64> {
        let n = cstring(name)?;
        let mut v = 0.0;
        check(unsafe { ffi::qerr_result_diag(self.p(), n.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// Every diagnostic, in the library's order.
    pub fn diagnostics(&self) -> Result<Vec<(String, f64)>> {
        let n = unsafe { ffi::qerr_result_diag_count(self.p()) }.max(0);
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let (mut name, mut v) = (std::ptr::null(), 0.0);
            check(unsafe { ffi::qerr_result_diag_at(self.p(), i, &mut name, &mut v) })?;
            out.push((string(name), v));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for ResultView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Result({}x{}, {})", self.rows(), self.cols(), self.plan())
    }
}

/// An owned quantization result; derefs to [`ResultView`] for its accessors.
pub struct QuantResult {
    view: ResultView<'static>,
}

impl QuantResult {
    pub(crate) fn adopt(r: *mut ffi::qerr_result) -> Result<QuantResult> {
        Ok(QuantResult { view: ResultView::from_ptr(r)? })
    }

    /// Hand the C object over (the caller frees it or gives it away).
    #[cfg_attr(not(qerr_model), allow(dead_code))]
    pub(crate) fn into_raw(self) -> *mut ffi::qerr_result {
        let p = self.view.r.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Deref for QuantResult {
    type Target = ResultView<'static>;
    fn deref(&self) -> &ResultView<'static> {
        &self.view
    }
}

impl std::fmt::Debug for QuantResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view.fmt(f)
    }
}

impl Drop for QuantResult {
    fn drop(&mut self) {
        unsafe { ffi::qerr_result_free(self.view.r.as_ptr()) }
    }
}

pub(crate) fn quantize_with(ctx: *mut ffi::qerr_ctx, plan: &Plan, weight: Matrix<'_>,
                            calib: Option<&Calibration>) -> Result<QuantResult> {
    let w = weight.borrow()?;
    let c = calib.map_or(std::ptr::null(), |c| c.ptr());
    let mut out = std::ptr::null_mut();
    check(unsafe { ffi::qerr_quantize(ctx, plan.ptr(), w.ptr(), c, &mut out) })?;
    QuantResult::adopt(out)
}
