//! Plans (a method and its settings) and method introspection.
use std::fmt;
use std::os::raw::c_char;
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::error::{check, Error, Result};
use crate::status;
use crate::util::{cstring, string};

/// Names of the methods compiled into the library ("rtn", "gptq", ...).
pub fn methods() -> Vec<String> {
    let n = unsafe { ffi::qerr_method_count() };
    (0..n).map(|i| string(unsafe { ffi::qerr_method_name(i) })).collect()
}

/// One-line description of a method.
pub fn method_summary(method: &str) -> Result<String> {
    let m = cstring(method)?;
    let p = unsafe { ffi::qerr_method_summary(m.as_ptr()) };
    if p.is_null() {
        check(unsafe { ffi::qerr_method_param_count(m.as_ptr()) })?;
        return Err(Error::new(status::E_UNKNOWN_METHOD, format!("unknown method '{}'", method)));
    }
    Ok(string(p))
}

/// Kind of a plan parameter (QERR_PARAM_*); `Other` for a code this crate
/// does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Int,
    Double,
    Bool,
    Choice,
    Other(i32),
}

impl ParamType {
    fn from_code(c: i32) -> ParamType {
        match c {
            ffi::QERR_PARAM_INT => ParamType::Int,
            ffi::QERR_PARAM_DOUBLE => ParamType::Double,
            ffi::QERR_PARAM_BOOL => ParamType::Bool,
            ffi::QERR_PARAM_CHOICE => ParamType::Choice,
            other => ParamType::Other(other),
        }
    }
}

/// One parameter of a method, as its table describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub key: String,
    pub kind: ParamType,
    /// Canonical text of the default ("4", "0.01", a choice word).
    pub default: String,
    pub min: f64,
    pub max: f64,
    /// The words of a choice parameter; empty otherwise.
    pub choices: Vec<String>,
    pub help: String,
}

/// Every parameter of `method`, in table order.
pub fn method_params(method: &str) -> Result<Vec<ParamInfo>> {
    let m = cstring(method)?;
    let n = check(unsafe { ffi::qerr_method_param_count(m.as_ptr()) })?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (mut key, mut dv, mut ch, mut help) = (std::ptr::null(), std::ptr::null(),
                                                   std::ptr::null(), std::ptr::null());
        let (mut kind, mut min, mut max) = (0, 0.0, 0.0);
        check(unsafe {
            ffi::qerr_method_param_info(m.as_ptr(), i, &mut key, &mut kind, &mut dv, &mut min,
                                        &mut max, &mut ch, &mut help)
        })?;
        let choices = string(ch);
        out.push(ParamInfo {
            key: string(key),
            kind: ParamType::from_code(kind),
            default: string(dv),
            min,
            max,
            choices: if choices.is_empty() { Vec::new() } else {
                choices.split('|').map(str::to_owned).collect()
            },
            help: string(help),
        });
    }
    Ok(out)
}

/// A method and a value for each of its keys.
pub struct Plan {
    p: NonNull<ffi::qerr_plan>,
}

// Distinct plans may be used from distinct threads; &self methods only read.
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl Plan {
    fn adopt(p: *mut ffi::qerr_plan) -> Result<Plan> {
        NonNull::new(p).map(|p| Plan { p }).ok_or_else(|| Error::new(status::E_INTERNAL,
                                                                      "NULL plan"))
    }

    /// A plan for `method` with every key at its default.
    pub fn new(method: &str) -> Result<Plan> {
        let m = cstring(method)?;
        let mut p = std::ptr::null_mut();
        check(unsafe { ffi::qerr_plan_create(&mut p, m.as_ptr()) })?;
        Plan::adopt(p)
    }

    /// From a spec such as "gptq:bits=4,group_size=128" (or "gptq").
    pub fn parse(spec: &str) -> Result<Plan> {
        let s = cstring(spec)?;
        let mut p = std::ptr::null_mut();
        check(unsafe { ffi::qerr_plan_parse(&mut p, s.as_ptr()) })?;
        Plan::adopt(p)
    }

    pub fn try_clone(&self) -> Result<Plan> {
        let mut p = std::ptr::null_mut();
        check(unsafe { ffi::qerr_plan_clone(self.p.as_ptr(), &mut p) })?;
        Plan::adopt(p)
    }

    pub(crate) fn ptr(&self) -> *const ffi::qerr_plan {
        self.p.as_ptr()
    }

    pub fn method(&self) -> String {
        string(unsafe { ffi::qerr_plan_method(self.p.as_ptr()) })
    }

    /// Any key from text: "4", "0.01", "true", a choice word.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Plan> {
        let (k, v) = (cstring(key)?, cstring(value)?);
        check(unsafe { ffi::qerr_plan_set(self.p.as_ptr(), k.as_ptr(), v.as_ptr()) })?;
        Ok(self)
    }

    pub fn set_int(&mut self, key: &str, value: i64) -> Result<&mut Plan> {
        let k = cstring(key)?;
        check(unsafe { ffi::qerr_plan_set_int(self.p.as_ptr(), k.as_ptr(), value) })?;
        Ok(self)
    }

    pub fn set_double(&mut self, key: &str, value: f64) -> Result<&mut Plan> {
        let k = cstring(key)?;
        check(unsafe { ffi::qerr_plan_set_double(self.p.as_ptr(), k.as_ptr(), value) })?;
        Ok(self)
    }

    pub fn set_bool(&mut self, key: &str, value: bool) -> Result<&mut Plan> {
        self.set_int(key, value as i64)
    }

    pub fn get_int(&self, key: &str) -> Result<i64> {
        let k = cstring(key)?;
        let mut v = 0;
        check(unsafe { ffi::qerr_plan_get_int(self.p.as_ptr(), k.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn get_double(&self, key: &str) -> Result<f64> {
        let k = cstring(key)?;
        let mut v = 0.0;
        check(unsafe { ffi::qerr_plan_get_double(self.p.as_ptr(), k.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// Canonical text of a value (e.g. a choice word).
    pub fn get_string(&self, key: &str) -> Result<String> {
        let k = cstring(key)?;
        let mut buf = [0 as c_char; 256];
        check(unsafe {
            ffi::qerr_plan_get_string(self.p.as_ptr(), k.as_ptr(), buf.as_mut_ptr(), buf.len())
        })?;
        Ok(string(buf.as_ptr()))
    }

    /// Canonical spec with every key: "gptq:bits=4,group_size=128,...".
    pub fn spec(&self) -> Result<String> {
        let mut need = 0usize;
        unsafe { ffi::qerr_plan_to_string(self.p.as_ptr(), std::ptr::null_mut(), 0, &mut need) };
        let mut buf = vec![0 as c_char; need.max(1)];
        check(unsafe {
            ffi::qerr_plan_to_string(self.p.as_ptr(), buf.as_mut_ptr(), buf.len(),
                                     std::ptr::null_mut())
        })?;
        Ok(string(buf.as_ptr()))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.spec() {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}:<unprintable>", self.method()),
        }
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plan({})", self)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe { ffi::qerr_plan_free(self.p.as_ptr()) }
    }
}
