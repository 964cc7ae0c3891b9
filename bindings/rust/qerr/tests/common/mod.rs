//! Deterministic test data without crates: a small PRNG and correlated
//! activations, the case where GPTQ's error feedback pays off.
#![allow(dead_code)]

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// (W [rows, n], X [samples, n]) with correlated, unevenly scaled inputs.
pub fn correlated_layer(rows: usize, n: usize, samples: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut mix = rng.normals(n * n);
    for (i, m) in mix.iter_mut().enumerate() {
        *m /= (n as f32).sqrt();
        if i / n == i % n {
            *m += 0.2;
        }
    }
    let scale: Vec<f32> = (0..n).map(|_| rng.normal().exp()).collect();
    let z = rng.normals(samples * n);
    let mut x = vec![0f32; samples * n];
    for s in 0..samples {
        for k in 0..n {
            let zk = z[s * n + k];
            for j in 0..n {
                x[s * n + j] += zk * mix[k * n + j];
            }
        }
        for j in 0..n {
            x[s * n + j] *= scale[j];
        }
    }
    (rng.normals(rows * n), x)
}

/// float32 -> bfloat16 bits by truncation, and back.
pub fn to_bf16(v: &[f32]) -> Vec<u16> {
    v.iter().map(|x| (x.to_bits() >> 16) as u16).collect()
}

pub fn from_bf16(v: &[u16]) -> Vec<f32> {
    v.iter().map(|&b| f32::from_bits((b as u32) << 16)).collect()
}

pub fn shared_data() -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os("QERR_SHARED_DATA").map(std::path::PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data")));
    candidates.into_iter().find(|d| d.join("README.md").is_file())
}
