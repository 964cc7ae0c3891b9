//! Quantize one synthetic linear layer (correlated inputs, as real
//! activations are) with every method the library offers, and print bits
//! per weight, relative layer error and time.
//!
//!     cargo run --example quantize_layer [rows cols bits group_size]
use std::time::Instant;

use qerr::{Calibration, Context, Matrix, Plan};

/// xorshift64* + Box-Muller: deterministic data without crates.
struct Rng(u64);

impl Rng {
    fn normal(&mut self) -> f32 {
        let mut u = [0f64; 2];
        for v in &mut u {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *v = ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5)
                / (1u64 << 53) as f64;
        }
        ((-2.0 * u[0].ln()).sqrt() * (2.0 * std::f64::consts::PI * u[1]).cos()) as f32
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (rows, cols, bits, group) = (get(0, 256), get(1, 512), get(2, 4), get(3, 128));
    let samples = 4 * cols;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mix: Vec<f32> = (0..cols * cols).map(|i| {
        rng.normal() / (cols as f32).sqrt() + if i / cols == i % cols { 0.2 } else { 0.0 }
    }).collect();
    let scale: Vec<f32> = (0..cols).map(|_| rng.normal().exp()).collect();
    let mut x = vec![0f32; samples * cols];
    for s in 0..samples {
        let z: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
        let row = &mut x[s * cols..(s + 1) * cols];
        for (k, zk) in z.iter().enumerate() {
            for (j, xj) in row.iter_mut().enumerate() {
                *xj += zk * mix[k * cols + j];
            }
        }
        for (xj, sj) in row.iter_mut().zip(&scale) {
            *xj *= sj;
        }
    }
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();

    let mut calib = Calibration::new(cols)?;
    calib.add(&x)?;
    let weight = Matrix::f32(&w, rows, cols)?;
    let mut ctx = Context::new()?;
    ctx.set_threads(2)?.set_seed(0)?;

    println!("libqerr {}, layer {}x{}, {} calibration rows", qerr::version(), rows, cols,
             calib.nsamples());
    println!("{:<18} {:<40} {:>8} {:>12} {:>9}", "method", "plan", "bits/w", "layer err",
             "seconds");
    for method in qerr::methods() {
        let keys: Vec<String> = qerr::method_params(&method)?.into_iter().map(|p| p.key).collect();
        let mut spec = Vec::new();
        if keys.iter().any(|k| k == "bits") {
            spec.push(format!("bits={}", bits));
        }
        if keys.iter().any(|k| k == "group_size") && group > 0 && cols % group == 0 {
            spec.push(format!("group_size={}", group));
        }
        let spec = if spec.is_empty() { method.clone() } else {
            format!("{}:{}", method, spec.join(","))
        };
        let plan = Plan::parse(&spec)?;
        let t0 = Instant::now();
        match ctx.quantize(&plan, weight, Some(&calib)) {
            Ok(r) => {
                let secs = t0.elapsed().as_secs_f64();
                let d = r.dequantize()?;
                let err = qerr::layer_error(weight, Matrix::f32(&d, rows, cols)?, &calib)?;
                println!("{:<18} {:<40} {:>8.3} {:>12.6} {:>9.3}", method, spec,
                         r.bits_per_weight(), err, secs);
            }
            Err(e) => println!("{:<18} {:<40} failed: {}", method, spec, e),
        }
    }
    Ok(())
}
