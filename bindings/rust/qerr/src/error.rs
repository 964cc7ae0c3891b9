//! Error: the status code and message of a failed libqerr call, and
//! [`ErrorKind`], the code as an enum to match on.
use std::ffi::CStr;
use std::fmt;

use qerr_sys as sys;

/// What went wrong, one variant per `QERR_E_*` status of qerr.h. A code this
/// version does not know (from a newer library) is `Other(code)`.
///
/// ```
/// # use qerr::{ErrorKind, Plan};
/// match Plan::parse("gptq:bits=99") {
///     Err(e) if e.kind() == ErrorKind::Range => println!("out of range: {}", e.message()),
///     Err(e) => panic!("{}", e),
///     Ok(_) => unreachable!(),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidArg,
    Shape,
    NoMem,
    NonFinite,
    NotPd,
    Io,
    Format,
    UnknownMethod,
    UnknownKey,
    Range,
    Unsupported,
    Cancelled,
    Checksum,
    Abi,
    Internal,
    NotFound,
    Numeric,
    Other(i32),
}

const KINDS: [(i32, ErrorKind); 17] = [
    (sys::QERR_E_INVALID_ARG, ErrorKind::InvalidArg),
    (sys::QERR_E_SHAPE, ErrorKind::Shape),
    (sys::QERR_E_NOMEM, ErrorKind::NoMem),
    (sys::QERR_E_NONFINITE, ErrorKind::NonFinite),
    (sys::QERR_E_NOT_PD, ErrorKind::NotPd),
    (sys::QERR_E_IO, ErrorKind::Io),
    (sys::QERR_E_FORMAT, ErrorKind::Format),
    (sys::QERR_E_UNKNOWN_METHOD, ErrorKind::UnknownMethod),
    (sys::QERR_E_UNKNOWN_KEY, ErrorKind::UnknownKey),
    (sys::QERR_E_RANGE, ErrorKind::Range),
    (sys::QERR_E_UNSUPPORTED, ErrorKind::Unsupported),
    (sys::QERR_E_CANCELLED, ErrorKind::Cancelled),
    (sys::QERR_E_CHECKSUM, ErrorKind::Checksum),
    (sys::QERR_E_ABI, ErrorKind::Abi),
    (sys::QERR_E_INTERNAL, ErrorKind::Internal),
    (sys::QERR_E_NOT_FOUND, ErrorKind::NotFound),
    (sys::QERR_E_NUMERIC, ErrorKind::Numeric),
];

impl ErrorKind {
    /// The kind of a `QERR_E_*` status code.
    pub fn from_code(code: i32) -> ErrorKind {
        KINDS.iter().find(|(c, _)| *c == code).map(|(_, k)| *k).unwrap_or(ErrorKind::Other(code))
    }

    /// The `QERR_E_*` status code of this kind.
    pub fn code(self) -> i32 {
        match self {
            ErrorKind::Other(code) => code,
            kind => KINDS.iter().find(|(_, k)| *k == kind).map(|(c, _)| *c).unwrap(),
        }
    }
}

/// A failed libqerr call: [`Error::kind`] to match on, [`Error::code`] the
/// raw `QERR_E_*` status (see [`crate::status`]), [`Error::message`] the
/// library's explanation.
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

    /// What went wrong, as an enum: `match e.kind() { ErrorKind::Shape => .. }`.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.code)
    }

    /// The raw negative status, e.g. [`crate::status::E_SHAPE`].
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
