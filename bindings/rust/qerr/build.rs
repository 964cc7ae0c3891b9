//! Reads what qerr-sys found (DEP_QERR_*): enables the model-level API when
//! the library has it, and gives this package's tests and examples an rpath
//! to the library directory so they run without LD_LIBRARY_PATH.
use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(qerr_model)");
    if env::var("DEP_QERR_MODEL").map(|v| v == "1").unwrap_or(true) {
        println!("cargo:rustc-cfg=qerr_model");
    }
    let unix = env::var("CARGO_CFG_TARGET_FAMILY").map(|f| f == "unix").unwrap_or(false);
    if let (Ok(dir), true) = (env::var("DEP_QERR_LIB_DIR"), unix) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
}
