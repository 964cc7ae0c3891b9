//! Finds libqerr for linking: $QERR_LIB_DIR first, then the `pkg-config`
//! program (no crates). Tells dependents (DEP_QERR_*) where it was found and
//! whether it has the model-level API of qerr/model.h.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The library's SOVERSION this crate is written against.
const ABI_MAJOR: u32 = 0;

fn library_in(dir: &Path) -> Option<PathBuf> {
    let names = [format!("libqerr.so.{}", ABI_MAJOR), "libqerr.so".to_string(),
                 "libqerr.dylib".to_string(), "libqerr.a".to_string()];
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

fn pkg_config(args: &[&str]) -> Option<String> {
    let out = Command::new("pkg-config").args(args).arg("qerr").output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn from_pkg_config() -> Option<PathBuf> {
    let version = pkg_config(&["--modversion"])?;
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(u32::MAX);
    if major != ABI_MAJOR {
        panic!("pkg-config found libqerr {} but qerr-sys needs ABI major {}", version, ABI_MAJOR);
    }
    let libdir = pkg_config(&["--variable=libdir"])?;
    Some(PathBuf::from(libdir))
}

/// True unless `nm` shows a library without qerr_model_load (a partial
/// build); without `nm` the header's promise is trusted.
fn has_model_api(lib: &Path) -> bool {
    match Command::new("nm").args(["-D", "--defined-only"]).arg(lib).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().any(|l| l.ends_with(" qerr_model_load"))
        }
        _ => true,
    }
}

fn main() {
    for var in ["QERR_LIB_DIR", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    println!("cargo:rustc-check-cfg=cfg(qerr_model)");
    let dir = match env::var_os("QERR_LIB_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if library_in(&d).is_none() {
                panic!("QERR_LIB_DIR={} holds no libqerr.so", d.display());
            }
            Some(d)
        }
        None => from_pkg_config(),
    };
    let mut model = true;
    match &dir {
        Some(d) => {
            println!("cargo:rustc-link-search=native={}", d.display());
            println!("cargo:lib_dir={}", d.display());
            // only this package's tests; dependents add their own (DEP_QERR_LIB_DIR)
            if env::var("CARGO_CFG_TARGET_FAMILY").map(|f| f == "unix").unwrap_or(false) {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
            }
            if let Some(lib) = library_in(d) {
                println!("cargo:rerun-if-changed={}", lib.display());
                model = has_model_api(&lib);
            }
        }
        None => println!(
            "cargo:warning=libqerr not found through QERR_LIB_DIR or pkg-config; \
             relying on the linker's default search path"
        ),
    }
    println!("cargo:model={}", if model { 1 } else { 0 });
    if model {
        println!("cargo:rustc-cfg=qerr_model");
    }
    println!("cargo:rustc-link-lib=dylib=qerr");
}
