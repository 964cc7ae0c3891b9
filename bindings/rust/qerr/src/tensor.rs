//! Matrix: a borrowed row-major slice with its shape, lent to the library as
//! a qerr_tensor without copying.
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::error::{check, Error, Result};
use crate::status;
use crate::util::product;

/// Element types libqerr reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    /// bfloat16: the upper 16 bits of a float32.
    BF16,
}

impl Dtype {
    pub(crate) fn code(self) -> i32 {
        match self {
            Dtype::F32 => ffi::QERR_DTYPE_F32,
            Dtype::F16 => ffi::QERR_DTYPE_F16,
            Dtype::BF16 => ffi::QERR_DTYPE_BF16,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Data<'a> {
    F32(&'a [f32]),
    Half(&'a [u16], Dtype),
}

/// A row-major [rows, cols] view of caller-owned data.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    data: Data<'a>,
    rows: usize,
    cols: usize,
}

fn check_len(len: usize, rows: usize, cols: usize) -> Result<()> {
    let need = product("matrix", &[rows, cols])?;
    if len != need {
        return Err(Error::new(status::E_SHAPE,
                              format!("slice has {} elements, {}x{} needs {}", len, rows, cols,
                                      need)));
    }
    Ok(())
}

impl<'a> Matrix<'a> {
    pub fn f32(data: &'a [f32], rows: usize, cols: usize) -> Result<Matrix<'a>> {
        check_len(data.len(), rows, cols)?;
        Ok(Matrix { data: Data::F32(data), rows, cols })
    }

    /// float16 or bfloat16 values given as their raw 16-bit patterns.
    pub fn half(data: &'a [u16], dtype: Dtype, rows: usize, cols: usize) -> Result<Matrix<'a>> {
        if dtype == Dtype::F32 {
            return Err(Error::new(status::E_INVALID_ARG, "Matrix::half takes F16 or BF16"));
        }
        check_len(data.len(), rows, cols)?;
        Ok(Matrix { data: Data::Half(data, dtype), rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// A qerr_tensor borrowing the data for as long as the guard lives.
    pub(crate) fn borrow(&self) -> Result<Borrowed<'a>> {
        let (ptr, dtype) = match self.data {
            Data::F32(s) => (s.as_ptr() as *mut std::os::raw::c_void, Dtype::F32),
            Data::Half(s, d) => (s.as_ptr() as *mut std::os::raw::c_void, d),
        };
        let shape = [self.rows as i64, self.cols as i64];
        let mut t = std::ptr::null_mut();
        // The library only reads a wrapped tensor that is passed as const.
        check(unsafe { ffi::qerr_tensor_wrap(&mut t, dtype.code(), 2, shape.as_ptr(), ptr) })?;
        let t = NonNull::new(t).ok_or_else(|| Error::new(status::E_INTERNAL, "NULL tensor"))?;
        Ok(Borrowed { t, _data: std::marker::PhantomData })
    }
}

pub(crate) struct Borrowed<'a> {
    t: NonNull<ffi::qerr_tensor>,
    _data: std::marker::PhantomData<&'a [u8]>,
}

impl Borrowed<'_> {
    pub(crate) fn ptr(&self) -> *const ffi::qerr_tensor {
        self.t.as_ptr()
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        unsafe { ffi::qerr_tensor_free(self.t.as_ptr()) }
    }
}
