//! Small conversions between Rust and C values.
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;

use crate::error::{Error, Result};
use crate::status;

pub(crate) fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(status::E_INVALID_ARG, format!("{:?} contains a NUL", s)))
}

pub(crate) fn cpath(p: &Path) -> Result<CString> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::new(status::E_INVALID_ARG, "path contains a NUL"))
    }
    #[cfg(not(unix))]
    {
        cstring(&p.to_string_lossy())
    }
}

/// An owned copy of a C string; "" for NULL.
pub(crate) fn string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// rows * cols as usize, refusing overflow.
pub(crate) fn product(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        Error::new(status::E_NOMEM, format!("{}: size {:?} overflows", what, dims))
    })
}
