//! Calibration sets: H = sum of x^T x over the activation rows of a layer.
use std::path::Path;
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::error::{check, Error, Result};
use crate::status;
use crate::tensor::Matrix;
use crate::util::{cpath, product};

pub struct Calibration {
    c: NonNull<ffi::qerr_calib>,
}

// Distinct sets may be used from distinct threads; &self methods and
// quantization only read.
unsafe impl Send for Calibration {}
unsafe impl Sync for Calibration {}

impl Calibration {
    fn adopt(p: *mut ffi::qerr_calib) -> Result<Calibration> {
        NonNull::new(p).map(|c| Calibration { c })
            .ok_or_else(|| Error::new(status::E_INTERNAL, "NULL calibration set"))
    }

    pub fn new(in_features: usize) -> Result<Calibration> {
        let n = i64::try_from(in_features)
            .map_err(|_| Error::new(status::E_RANGE, "in_features is too large"))?;
        let mut p = std::ptr::null_mut();
        check(unsafe { ffi::qerr_calib_create(&mut p, n) })?;
        Calibration::adopt(p)
    }

    /// A set that also keeps a uniform, seeded sample of at most `max_rows`
    /// raw rows (for methods that need activations).
    pub fn with_reservoir(in_features: usize, max_rows: usize, seed: u64) -> Result<Calibration> {
        let c = Calibration::new(in_features)?;
        check(unsafe { ffi::qerr_calib_set_reservoir(c.c.as_ptr(), max_rows as i64, seed) })?;
        Ok(c)
    }

    /// A set from a symmetric Gram matrix (n x n, row-major) that summed
    /// `nsamples` rows.
    pub fn from_gram(gram: &[f64], n: usize, nsamples: u64) -> Result<Calibration> {
        let need = product("gram", &[n, n])?;
        if gram.len() != need {
            return Err(Error::new(status::E_SHAPE,
                                  format!("gram has {} values, {}x{} needs {}", gram.len(), n, n,
                                          need)));
        }
        let mut p = std::ptr::null_mut();
        check(unsafe {
            ffi::qerr_calib_from_gram(&mut p, gram.as_ptr(), n as i64, nsamples as i64)
        })?;
        Calibration::adopt(p)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Calibration> {
        let p = cpath(path.as_ref())?;
        let mut c = std::ptr::null_mut();
        check(unsafe { ffi::qerr_calib_load(&mut c, p.as_ptr()) })?;
        Calibration::adopt(c)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = cpath(path.as_ref())?;
        check(unsafe { ffi::qerr_calib_save(self.c.as_ptr(), p.as_ptr()) })?;
        Ok(())
    }

    pub(crate) fn ptr(&self) -> *const ffi::qerr_calib {
        self.c.as_ptr()
    }

    /// Add float32 rows, row-major: `rows.len()` must be a multiple of
    /// in_features.
    pub fn add(&mut self, rows: &[f32]) -> Result<&mut Calibration> {
        let n = self.in_features();
        if n == 0 || rows.len() % n != 0 {
            return Err(Error::new(status::E_SHAPE,
                                  format!("{} values are not whole rows of {}", rows.len(), n)));
        }
        let nrows = (rows.len() / n) as i64;
        check(unsafe { ffi::qerr_calib_add_f32(self.c.as_ptr(), rows.as_ptr(), nrows) })?;
        Ok(self)
    }

    /// Add rows of any dtype ([rows, in_features]).
    pub fn add_matrix(&mut self, rows: Matrix<'_>) -> Result<&mut Calibration> {
        let t = rows.borrow()?;
        check(unsafe { ffi::qerr_calib_add(self.c.as_ptr(), t.ptr()) })?;
        Ok(self)
    }

    /// self += other (Gram matrices, sample counts, reservoirs).
    pub fn merge(&mut self, other: &Calibration) -> Result<&mut Calibration> {
        check(unsafe { ffi::qerr_calib_merge(self.c.as_ptr(), other.ptr()) })?;
        Ok(self)
    }

    pub fn in_features(&self) -> usize {
        unsafe { ffi::qerr_calib_in_features(self.c.as_ptr()) }.max(0) as usize
    }

    pub fn nsamples(&self) -> u64 {
        unsafe { ffi::qerr_calib_nsamples(self.c.as_ptr()) }.max(0) as u64
    }

    /// A copy of H, n x n row-major.
    pub fn gram(&self) -> Result<Vec<f64>> {
        let n = self.in_features();
        let mut out = vec![0.0; product("gram", &[n, n])?];
        check(unsafe { ffi::qerr_calib_gram(self.c.as_ptr(), out.as_mut_ptr(), n as i64) })?;
        Ok(out)
    }

    /// A copy of the reservoir rows (row-major, `len / in_features` rows).
    pub fn reservoir(&self) -> Result<Vec<f32>> {
        let mut rows = std::ptr::null();
        let mut k = 0i64;
        check(unsafe { ffi::qerr_calib_reservoir(self.c.as_ptr(), &mut rows, &mut k) })?;
        let len = product("reservoir", &[k.max(0) as usize, self.in_features()])?;
        if len == 0 || rows.is_null() {
            return Ok(Vec::new());
        }
        Ok(unsafe { std::slice::from_raw_parts(rows, len) }.to_vec())
    }
}

impl std::fmt::Debug for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Calibration(in_features={}, nsamples={})", self.in_features(), self.nsamples())
    }
}

impl Drop for Calibration {
    fn drop(&mut self) {
        unsafe { ffi::qerr_calib_free(self.c.as_ptr()) }
    }
}
