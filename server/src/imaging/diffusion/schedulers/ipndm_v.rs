//! "ipndm_v": stable-diffusion.cpp's `IPNDM_V` sampler (`denoiser.hpp`, `sample_k_diffusion`),
//! the variable-step iPNDM of https://github.com/zju-pi/diff-sampler (diff-solvers-main), in
//! sigma space on k-diffusion's discrete or Karras sigmas. With `d_i = (x - D_i) / sigma_i`,
//! `h_n = sigma_{i+1} - sigma_i` and `h_{n-1} = sigma_i - sigma_{i-1}`, by order
//! `min(i + 1, 4)`:
//!
//! - `x + h_n d_i`
//! - `x + h_n ((2 + h_n / h_{n-1}) d_i - (h_n / h_{n-1}) d_{i-1}) / 2` (variable step)
//! - orders 3 and 4 use the fixed-step Adams-Bashforth weights, exactly as stable-diffusion.cpp
//!   does (it computes `h_{n-2}`, `h_{n-3}` but does not use them; the diff-solvers original
//!   has variable-step weights there too).

use super::ipndm::{Coefficients, FixedStep, Multistep};

/// iPNDM_V's rule: variable-step weights at order 2, fixed-step ones otherwise.
pub(super) enum VariableStep {}

impl Coefficients for VariableStep {
    fn weights(order: usize, sigmas: &[f64], index: usize) -> (Vec<f64>, f64) {
        if order != 2 {
            return FixedStep::weights(order, sigmas, index);
        }
        let sigma = sigmas[index];
        let h_n = sigmas[index + 1] - sigma;
        let h_n_1 = index
            .checked_sub(1)
            .map_or(h_n, |previous| sigma - sigmas[previous]);
        let ratio = h_n / h_n_1;
        (vec![2.0 + ratio, -ratio], 2.0)
    }
}

/// "ipndm_v": iPNDM's loop (`ipndm::Multistep`) with the variable-step weights.
pub(super) type IpndmV = Multistep<VariableStep>;

#[cfg(test)]
mod tests {
    use super::super::testing::check_trajectories;
    use super::super::SamplerKind;

    /// Against the fixture script's transcription of stable-diffusion.cpp's loop.
    #[test]
    fn trajectories_match_reference() {
        check_trajectories(SamplerKind::IpndmV);
    }
}
