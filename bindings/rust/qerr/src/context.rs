//! Context: worker threads, seed, and Rust closures for progress and log
//! messages. A panic inside a closure cancels the running call and is
//! resumed once the call has returned (it never unwinds through C).
use std::any::Any;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::error::{check, Error, Result};
use crate::plan::Plan;
use crate::result::QuantResult;
use crate::status;
use crate::tensor::Matrix;
use crate::util::string;
use crate::Calibration;

type ProgressFn = Box<dyn FnMut(&str, f64) -> bool + Send>;
type LogFn = Box<dyn FnMut(i32, &str) + Send>;

#[derive(Default)]
struct Callbacks {
    progress: Option<ProgressFn>,
    log: Option<LogFn>,
    panic: Option<Box<dyn Any + Send>>,
}

/// Settings for the calls that take one: threads, seed, callbacks.
pub struct Context {
    ctx: NonNull<ffi::qerr_ctx>,
    callbacks: Box<Callbacks>, // stable address handed to C as `user`
}

// The context is used by one thread at a time (every call takes &mut self)
// and its closures are Send.
unsafe impl Send for Context {}

unsafe extern "C" fn on_progress(user: *mut c_void, stage: *const c_char, fraction: f64) -> c_int {
    let cb = &mut *(user as *mut Callbacks);
    if cb.panic.is_some() {
        return 1;
    }
    let stage = string(stage);
    let f = match cb.progress.as_mut() {
        Some(f) => f,
        None => return 0,
    };
    match catch_unwind(AssertUnwindSafe(|| f(&stage, fraction))) {
        Ok(cancel) => cancel as c_int,
        Err(payload) => {
            cb.panic = Some(payload);
            1
        }
    }
}

unsafe extern "C" fn on_log(user: *mut c_void, level: c_int, message: *const c_char) {
    let cb = &mut *(user as *mut Callbacks);
    let message = string(message);
    if let (Some(f), None) = (cb.log.as_mut(), cb.panic.as_ref()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(level, &message))) {
            cb.panic = Some(payload);
        }
    }
}

impl Context {
    pub fn new() -> Result<Context> {
        let mut p = std::ptr::null_mut();
        check(unsafe { ffi::qerr_ctx_create(&mut p) })?;
        let ctx = NonNull::new(p).ok_or_else(|| Error::new(status::E_INTERNAL, "NULL context"))?;
        Ok(Context { ctx, callbacks: Box::default() })
    }

    /// Worker threads for libqerr's own loops; 0 = every online CPU.
    pub fn set_threads(&mut self, threads: usize) -> Result<&mut Context> {
        let t = i32::try_from(threads).unwrap_or(i32::MAX);
        check(unsafe { ffi::qerr_ctx_set_threads(self.ctx.as_ptr(), t) })?;
        Ok(self)
    }

    pub fn threads(&self) -> usize {
        unsafe { ffi::qerr_ctx_threads(self.ctx.as_ptr()) }.max(0) as usize
    }

    pub fn set_seed(&mut self, seed: u64) -> Result<&mut Context> {
        check(unsafe { ffi::qerr_ctx_set_seed(self.ctx.as_ptr(), seed) })?;
        Ok(self)
    }

    pub fn seed(&self) -> u64 {
        unsafe { ffi::qerr_ctx_seed(self.ctx.as_ptr()) }
    }

    /// `f(stage, fraction)` is called as work advances; returning `true`
    /// cancels the call (it then fails with `E_CANCELLED`).
    pub fn on_progress<F>(&mut self, f: F) -> Result<&mut Context>
    where
        F: FnMut(&str, f64) -> bool + Send + 'static,
    {
        self.callbacks.progress = Some(Box::new(f));
        let user = &mut *self.callbacks as *mut Callbacks as *mut c_void;
        check(unsafe { ffi::qerr_ctx_set_progress(self.ctx.as_ptr(), Some(on_progress), user) })?;
        Ok(self)
    }

    /// `f(level, message)` gets the library's messages up to `max_level`
    /// (QERR_LOG_ERROR = 1 ... QERR_LOG_DEBUG = 4).
    pub fn on_log<F>(&mut self, max_level: i32, f: F) -> Result<&mut Context>
    where
        F: FnMut(i32, &str) + Send + 'static,
    {
        self.callbacks.log = Some(Box::new(f));
        let user = &mut *self.callbacks as *mut Callbacks as *mut c_void;
        check(unsafe { ffi::qerr_ctx_set_log(self.ctx.as_ptr(), Some(on_log), user, max_level) })?;
        Ok(self)
    }

    /// Run one call with this context; a closure's panic is resumed here.
    pub(crate) fn run<T>(&mut self, f: impl FnOnce(*mut ffi::qerr_ctx) -> Result<T>) -> Result<T> {
        let out = f(self.ctx.as_ptr());
        if let Some(payload) = self.callbacks.panic.take() {
            drop(out);
            resume_unwind(payload);
        }
        out
    }

    /// Run `f` with this context, or with the library's defaults (NULL) when
    /// there is none.
    pub(crate) fn run_opt<T>(ctx: Option<&mut Context>,
                             f: impl FnOnce(*mut ffi::qerr_ctx) -> Result<T>) -> Result<T> {
        match ctx {
            Some(ctx) => ctx.run(f),
            None => f(std::ptr::null_mut()),
        }
    }

    /// Quantize `weight` with these settings; see [`crate::quantize`].
    pub fn quantize(&mut self, plan: &Plan, weight: Matrix<'_>, calib: Option<&Calibration>)
                    -> Result<QuantResult> {
        self.run(|ctx| crate::result::quantize_with(ctx, plan, weight, calib))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { ffi::qerr_ctx_free(self.ctx.as_ptr()) }
    }
}
