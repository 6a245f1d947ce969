//! Stable Diffusion on ONNX Runtime: the tokenizer, the schedulers (one file per sampler behind
//! one trait), the seeded noise, the model-file adapter and the pipeline that joins them.

pub mod npy;
pub mod onnx;
pub mod pipeline;
pub mod preview;
pub mod prompt;
pub mod rng;
pub mod schedulers;
pub mod text;
pub mod tokenizer;
