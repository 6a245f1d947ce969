//! PyTorch-compatible CPU random numbers, so that a seed gives the same initial latents and
//! ancestral noise as `torch.randn(..., generator=torch.Generator("cpu").manual_seed(seed))`.
//!
//! Re-implemented from the ATen sources (not copied):
//! - `ATen/core/MT19937RNGEngine.h`: the standard 32-bit Mersenne Twister, seeded with
//!   `init_genrand(seed & 0xffffffff)` (so seeds 5 and 2^32 + 5 are the same stream);
//!   `CPUGeneratorImpl::random64()` joins two outputs, the first as the high half.
//! - `ATen/core/DistributionsHelper.h` / `TransformationHelper.h`: `uniform_real_distribution`
//!   (24 random bits for float, 53 for double) and `normal_distribution<double>`: Box-Muller
//!   from two doubles, returning `r cos(theta)` and caching `r sin(theta)` in the generator for
//!   the next scalar draw.
//! - `ATen/native/cpu/DistributionKernels.cpp` `normal_kernel`: a float tensor of fewer than 16
//!   elements draws each value from `normal_distribution<double>` (using and refilling the
//!   cache); 16 or more go through `normal_fill_AVX2`: all values first drawn as uniform
//!   floats, then transformed 16 at a time (`u1 = 1 - data[j]`, `u2 = data[j + 8]`, j < 8),
//!   the last 16 re-drawn and re-transformed when the size is not a multiple of 16.
//! - `ATen/native/cpu/avx_mathfun.h`: the single-precision `log256_ps` and `sincos256_ps`
//!   (Cephes polynomials) used by that AVX2 path, evaluated here in scalar f32 with the same
//!   operation order and the multiply-adds GCC fuses into FMA, which makes the output
//!   bit-identical to torch on x86-64 CPUs with AVX2 (torch built without AVX2 uses libm
//!   `logf`/`cosf` instead and differs in the last bits).

use super::schedulers::NoiseSource;

/// PyTorch's CPU generator (`torch.Generator("cpu").manual_seed(seed)`) and `torch.randn`.
#[derive(Clone)]
pub struct TorchRng {
    engine: Mt19937,
    /// `next_double_normal_sample`: the second Box-Muller value of the scalar path.
    next_double_normal: Option<f64>,
}

impl TorchRng {
    pub fn new(seed: u64) -> Self {
        TorchRng {
            engine: Mt19937::new(seed),
            next_double_normal: None,
        }
    }

    /// `torch.randn(n, generator=...)` as float32; successive calls continue the stream.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        self.fill_randn(&mut out);
        out
    }

    fn fill_randn(&mut self, out: &mut [f32]) {
        let n = out.len();
        if n < 16 {
            for v in out.iter_mut() {
                *v = self.normal_f64() as f32;
            }
            return;
        }
        for v in out.iter_mut() {
            *v = self.uniform_f32();
        }
        for chunk in out.chunks_exact_mut(16) {
            box_muller_16(chunk);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `uniform_real_distribution<double>(0, 1)`: 53 bits of `random64()`.
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        let bits = ((hi << 32) | lo) & ((1u64 << 53) - 1);
        bits as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `normal_distribution<double>(0, 1)` with the generator's cached second value.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }
}

impl NoiseSource for TorchRng {
    fn fill_standard_normal(&mut self, out: &mut [f32]) {
        self.fill_randn(out);
    }
}

/// The standard MT19937 (Matsumoto & Nishimura 1998) with `init_genrand` seeding.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    const N: usize = 624;
    const M: usize = 397;

    fn new(seed: u64) -> Self {
        let mut state = [0u32; Self::N];
        state[0] = seed as u32;
        for j in 1..Self::N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Mt19937 {
            state,
            index: Self::N,
        }
    }

    fn twist(&mut self) {
        for k in 0..Self::N {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % Self::N] & 0x7fff_ffff);
            let mut next = self.state[(k + Self::M) % Self::N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[k] = next;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= Self::N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// `normal_fill_16_AVX2` on 16 uniforms in place: `data[j]` and `data[j + 8]` become
/// `sqrt(-2 ln(1 - data[j])) * (cos, sin)(2 pi data[j + 8])`.
fn box_muller_16(data: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * log_ps(u1)).sqrt();
        let (sin, cos) = sincos_ps(two_pi * u2);
        data[j] = radius * cos;
        data[j + 8] = radius * sin;
    }
}

/// `log256_ps` (Cephes `logf`) for one lane. Inputs are in (0, 1] here. The constants are
/// avx_mathfun's literals, kept as written.
#[allow(clippy::excessive_precision)]
fn log_ps(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2; // cephes_SQRTHF
    const P: [f32; 9] = [
        7.0376836292E-2,
        -1.1514610310E-1,
        1.1676998740E-1,
        -1.2420140846E-1,
        1.4249322787E-1,
        -1.6668057665E-1,
        2.0000714765E-1,
        -2.4999993993E-1,
        3.3333331174E-1,
    ];
    const Q1: f32 = -2.12194440e-4;
    const Q2: f32 = 0.693359375;
    if x <= 0.0 {
        return f32::NAN;
    }
    // Split into mantissa in [0.5, 1) and exponent.
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    let mut m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let below = m < SQRTHF;
    let tmp = if below { m } else { 0.0 };
    m -= 1.0;
    if below {
        e -= 1.0;
    }
    m += tmp;
    let z = m * m;
    let mut y = P[0];
    for &p in &P[1..] {
        y = y.mul_add(m, p);
    }
    y *= m;
    y = y.mul_add(z, e * Q1);
    y = z.mul_add(-0.5, y);
    let m = m + y;
    e.mul_add(Q2, m)
}

/// `sincos256_ps` (Cephes `sinf`/`cosf` with the shared argument reduction) for one lane;
/// returns `(sin, cos)`. Arguments are in [0, 2 pi) here.
#[allow(clippy::excessive_precision)]
fn sincos_ps(x: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516; // 4 / pi
    const DP1: f32 = -0.78515625;
    const DP2: f32 = -2.4187564849853515625e-4;
    const DP3: f32 = -3.77489497744594108e-8;
    const SIN_P: [f32; 3] = [-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1];
    const COS_P: [f32; 3] = [
        2.443315711809948E-005,
        -1.388731625493765E-003,
        4.166664568298827E-002,
    ];
    let sign_in = x.is_sign_negative();
    let ax = x.abs();
    // Octant j = (trunc(|x| * 4/pi) + 1) & !1.
    let j = ((ax * FOPI) as i32 + 1) & !1;
    let y = j as f32;
    let swap_sin = j & 4 != 0;
    let sin_poly_first = j & 2 == 0;
    let cos_negative = (!(j - 2)) & 4 != 0;
    // Extended-precision reduction: x - y * pi/4.
    let r = y.mul_add(DP3, y.mul_add(DP2, y.mul_add(DP1, ax)));
    let z = r * r;
    // cos polynomial on [-pi/4, pi/4].
    let mut c = COS_P[0];
    c = c.mul_add(z, COS_P[1]);
    c = c.mul_add(z, COS_P[2]);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;
    // sin polynomial.
    let mut s = SIN_P[0];
    s = s.mul_add(z, SIN_P[1]);
    s = s.mul_add(z, SIN_P[2]);
    s *= z;
    s = s.mul_add(r, r);
    let (sin, cos) = if sin_poly_first { (s, c) } else { (c, s) };
    let sin = if sign_in ^ swap_sin { -sin } else { sin };
    let cos = if cos_negative { -cos } else { cos };
    (sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/assets/fixtures/schedulers.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture (run make_scheduler_fixtures.py)");
        serde_json::from_str(&text).expect("fixture JSON")
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    }

    /// Bit-exact (float32 printed with 9 significant digits round-trips exactly).
    fn assert_same(ours: &[f32], torch: &[f32], what: &str) {
        assert_eq!(ours.len(), torch.len(), "{what}");
        for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-6,
                "{what}[{i}]: {a} vs torch {b}"
            );
        }
    }

    #[test]
    fn first_values_of_seed_0() {
        // torch.randn(3, generator=torch.Generator().manual_seed(0)) (scalar path)
        let v = TorchRng::new(0).randn(3);
        assert_eq!(v, [1.5409961, -0.2934289, -2.1787894]);
        // torch.manual_seed(0); torch.randn(16) (vectorised path)
        let v = TorchRng::new(0).randn(16);
        assert!(
            (v[0] - -1.1258398).abs() < 1e-7 && (v[15] - -0.24727815).abs() < 1e-7,
            "{v:?}"
        );
    }

    #[test]
    fn matches_torch_randn() {
        let fixture = fixture();
        let cases = fixture["randn"].as_array().expect("randn cases");
        assert!(cases.len() >= 30);
        for case in cases {
            let seed = case["seed"].as_u64().expect("seed");
            let sizes: Vec<usize> = case["sizes"]
                .as_array()
                .expect("sizes")
                .iter()
                .map(|s| s.as_u64().expect("size") as usize)
                .collect();
            let mut rng = TorchRng::new(seed);
            // Successive calls on one generator, concatenated.
            let ours: Vec<f32> = sizes.iter().flat_map(|&n| rng.randn(n)).collect();
            let what = format!("seed {seed} sizes {sizes:?}");
            match case.get("indices") {
                None => assert_same(&ours, &floats(&case["values"]), &what),
                Some(indices) => {
                    let picked: Vec<f32> = indices
                        .as_array()
                        .expect("indices")
                        .iter()
                        .map(|i| ours[i.as_u64().expect("index") as usize])
                        .collect();
                    assert_same(&picked, &floats(&case["values"]), &what);
                    let sum: f64 = ours.iter().map(|&v| v as f64).sum();
                    let expected = case["sum"].as_f64().expect("sum");
                    assert!(
                        (sum - expected).abs() < 1e-3,
                        "{what}: sum {sum} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn seed_uses_low_32_bits_and_streams_continue() {
        let a = TorchRng::new(5).randn(40);
        let b = TorchRng::new((1u64 << 32) + 5).randn(40);
        assert_eq!(a, b);
        let mut rng = TorchRng::new(9);
        let mut noise = vec![0.0; 20];
        rng.fill_standard_normal(&mut noise);
        let mut again = TorchRng::new(9);
        assert_eq!(noise, again.randn(20));
        assert!(TorchRng::new(9).randn(0).is_empty());
    }
}
