//! Error: the status code and message of a failed libqerr call.
use std::ffi::CStr;
use std::fmt;

use qerr_sys as sys;

/// A failed libqerr call: `code` is one of the `QERR_E_*` statuses (see
/// [`crate::status`]), `message` the library's explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    /// The negative status, e.g. [`crate::status::E_SHAPE`].
    pub fn code(&self) -> i32 {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The library's fixed text for the code ("shape mismatch", ...).
    pub fn status_string(&self) -> String {
        unsafe { CStr::from_ptr(sys::qerr_status_string(self.code)) }
            .to_string_lossy()
            .into_owned()
    }

    /// The error of the last failing call on this thread, with `code`.
    pub(crate) fn last(code: i32) -> Error {
        let msg = unsafe { CStr::from_ptr(sys::qerr_last_error()) }.to_string_lossy().into_owned();
        let mut e = Error { code, message: msg };
        if e.message.is_empty() {
            e.message = e.status_string();
        }
        e
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, code {})", self.message, self.status_string(), self.code)
    }
}

impl std::error::Error for Error {}

/// Ok(status) for a non-negative status, the thread's last error otherwise.
pub(crate) fn check(status: i32) -> Result<i32> {
    if status < 0 {
        Err(Error::last(status))
    } else {
        Ok(status)
    }
}
