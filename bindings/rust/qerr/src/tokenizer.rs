//! Tokenizers (qerr/tokenizer.h): a model's own tokenizer, read from its
//! tokenizer.json (+ tokenizer_config.json) or a llama2.c tokenizer.bin,
//! giving the ids of Hugging Face's tokenizers.
use std::os::raw::{c_int, c_void};
use std::path::Path;
use std::ptr::NonNull;

use qerr_sys as ffi;

use crate::error::{check, Error, Result};
use crate::status;
use crate::util::cpath;

/// A loaded tokenizer; read-only, so it may be shared between threads.
pub struct Tokenizer {
    t: NonNull<ffi::qerr_tokenizer>,
}

unsafe impl Send for Tokenizer {}
unsafe impl Sync for Tokenizer {}

/// Take ownership of ids allocated by libqerr.
fn take_ids(ptr: *mut u32, n: i64) -> Vec<u32> {
    let out = if n > 0 && !ptr.is_null() {
        unsafe { std::slice::from_raw_parts(ptr, n as usize) }.to_vec()
    } else {
        Vec::new()
    };
    unsafe { ffi::qerr_free(ptr as *mut c_void) };
    out
}

fn flags(add_special: bool, parse_special: bool) -> u32 {
    (if add_special { ffi::QERR_TOKENIZE_ADD_SPECIAL } else { 0 })
        | (if parse_special { ffi::QERR_TOKENIZE_PARSE_SPECIAL } else { 0 })
}

impl Tokenizer {
    /// From a model directory, a tokenizer.json file or a llama2.c
    /// tokenizer.bin. Unsupported kinds give `E_UNSUPPORTED` naming them.
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let p = cpath(path.as_ref())?;
        let mut t = std::ptr::null_mut();
        check(unsafe { ffi::qerr_tokenizer_load(&mut t, p.as_ptr()) })?;
        NonNull::new(t).map(|t| Tokenizer { t })
            .ok_or_else(|| Error::new(status::E_INTERNAL, "NULL tokenizer"))
    }

    /// Number of ids (largest id + 1, added tokens included).
    pub fn vocab_size(&self) -> usize {
        unsafe { ffi::qerr_tokenizer_vocab_size(self.t.as_ptr()) }.max(0) as usize
    }

    pub fn bos_id(&self) -> Option<u32> {
        let v = unsafe { ffi::qerr_tokenizer_bos_id(self.t.as_ptr()) };
        (v >= 0).then_some(v as u32)
    }

    pub fn eos_id(&self) -> Option<u32> {
        let v = unsafe { ffi::qerr_tokenizer_eos_id(self.t.as_ptr()) };
        (v >= 0).then_some(v as u32)
    }

    /// Token ids of UTF-8 `text` (invalid sequences read as U+FFFD).
    /// `add_special`: BOS/EOS by the tokenizer's rules; `parse_special`:
    /// special tokens written in the text become their ids (both Hugging
    /// Face's defaults).
    pub fn encode(&self, text: impl AsRef<[u8]>, add_special: bool, parse_special: bool)
                  -> Result<Vec<u32>> {
        let b = text.as_ref();
        let (mut ptr, mut n) = (std::ptr::null_mut(), 0i64);
        check(unsafe {
            ffi::qerr_tokenizer_encode(self.t.as_ptr(), b.as_ptr() as *const _, b.len(),
                                       flags(add_special, parse_special), &mut ptr, &mut n)
        })?;
        Ok(take_ids(ptr, n))
    }

    /// (ids, text bytes) of a text file: plain UTF-8 is one document, JSON
    /// Lines (a "text" field per line) one document per line.
    pub fn encode_file(&self, path: impl AsRef<Path>, add_special: bool, parse_special: bool)
                       -> Result<(Vec<u32>, u64)> {
        let p = cpath(path.as_ref())?;
        let (mut ptr, mut n, mut bytes) = (std::ptr::null_mut(), 0i64, 0i64);
        check(unsafe {
            ffi::qerr_tokenizer_encode_file(self.t.as_ptr(), p.as_ptr(),
                                            flags(add_special, parse_special), &mut ptr, &mut n,
                                            &mut bytes)
        })?;
        Ok((take_ids(ptr, n), bytes.max(0) as u64))
    }

    /// The bytes the ids stand for (a cut inside a character stays cut).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>> {
        let (mut p, mut n) = (std::ptr::null_mut(), 0usize);
        let f = if skip_special { ffi::QERR_DETOKENIZE_SKIP_SPECIAL } else { 0 };
        check(unsafe {
            ffi::qerr_tokenizer_decode(self.t.as_ptr(), ids.as_ptr(), ids.len() as i64, f, &mut p,
                                       &mut n)
        })?;
        let out = if p.is_null() { Vec::new() } else {
            unsafe { std::slice::from_raw_parts(p as *const u8, n) }.to_vec()
        };
        unsafe { ffi::qerr_free(p as *mut c_void) };
        Ok(out)
    }

    /// Decoded text; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)?).into_owned())
    }

    /// (the bytes token `id` stands for, whether it is special); None when
    /// `id` is outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<(Vec<u8>, bool)> {
        let (mut n, mut special) = (0usize, 0 as c_int);
        let p = unsafe { ffi::qerr_tokenizer_token_text(self.t.as_ptr(), id, &mut n, &mut special) };
        if p.is_null() {
            return None;
        }
        Some((unsafe { std::slice::from_raw_parts(p as *const u8, n) }.to_vec(), special != 0))
    }
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        unsafe { ffi::qerr_tokenizer_free(self.t.as_ptr()) }
    }
}
