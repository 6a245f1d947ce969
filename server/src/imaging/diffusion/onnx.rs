//! One ONNX model file (text encoder, UNet, VAE…) behind a small adapter that reads the
//! session's declared inputs and converts what the pipeline has into what the model wants:
//! int32 or int64 ids, float or int64 timesteps as a scalar or `[batch]`, fp16 or fp32
//! tensors. Exports differ on all of these (diffusers, optimum, OnnxStack and hand-made
//! exports each chose differently); the pipeline stays written in f32 and i64.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::f16;
use ort::session::{RunOptions, Session};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::super::runtime::{Runtime, RuntimeError};

/// A tensor the pipeline hands to a model, before conversion to the declared type.
pub enum Feed<'a> {
    F32(&'a [usize], &'a [f32]),
    I64(&'a [usize], &'a [i64]),
}

/// A declared input or output: name, element type, shape (`-1` for symbolic dimensions).
#[derive(Debug, Clone)]
pub struct Port {
    pub name: String,
    pub element: TensorElementType,
    pub shape: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{file}: the model has no input named `{input}` (it has: {available})")]
    MissingInput {
        file: String,
        input: String,
        available: String,
    },
    #[error("{file}: input `{input}` has element type {found:?}, which Easel cannot feed (expected {expected})")]
    UnsupportedType {
        file: String,
        input: String,
        found: TensorElementType,
        expected: &'static str,
    },
    #[error("{file}: the model has no output named `{output}` (it has: {available})")]
    MissingOutput {
        file: String,
        output: String,
        available: String,
    },
    #[error("{file}: running the model failed: {message}")]
    Run { file: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

/// An output copied out as f32 (fp16 outputs are widened).
#[derive(Debug, Clone)]
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub struct OnnxModel {
    file: PathBuf,
    /// `run` needs `&mut Session` (ONNX Runtime's allocators are not thread-safe); a model is
    /// shared by jobs, so it sits behind a lock. Jobs on one device run one at a time anyway.
    session: Mutex<Session>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

impl OnnxModel {
    pub fn load(runtime: &Runtime, file: &Path) -> Result<Self, ModelError> {
        let session = runtime.session(file)?;
        let ports = |list: &[ort::value::Outlet]| -> Vec<Port> {
            list.iter()
                .filter_map(|o| match o.dtype() {
                    ValueType::Tensor { ty, shape, .. } => Some(Port {
                        name: o.name().to_string(),
                        element: *ty,
                        shape: shape.to_vec(),
                    }),
                    _ => None,
                })
                .collect()
        };
        let inputs = ports(session.inputs());
        let outputs = ports(session.outputs());
        Ok(Self {
            file: file.to_path_buf(),
            session: Mutex::new(session),
            inputs,
            outputs,
        })
    }

    pub fn file(&self) -> String {
        self.file.display().to_string()
    }

    pub fn input(&self, name: &str) -> Option<&Port> {
        self.inputs.iter().find(|p| p.name == name)
    }

    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|p| p.name == name)
    }

    /// Fails early, with the file and input named, when a required input is absent.
    pub fn require_input(&self, name: &str) -> Result<&Port, ModelError> {
        self.input(name).ok_or_else(|| ModelError::MissingInput {
            file: self.file(),
            input: name.to_string(),
            available: self
                .inputs
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Runs the model on named feeds and returns the requested outputs (by index) as f32.
    /// `options` lets another thread terminate a long run (cancellation mid-step).
    pub fn run(
        &self,
        feeds: &[(&str, Feed<'_>)],
        wanted: &[usize],
        options: Option<&RunOptions>,
    ) -> Result<Vec<Output>, ModelError> {
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(feeds.len());
        for (name, feed) in feeds {
            let port = self.require_input(name)?;
            values.push((name.to_string(), self.convert(port, feed)?));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let run_error = |e: ort::Error| {
            if options.is_some() && e.to_string().to_lowercase().contains("terminat") {
                ModelError::Cancelled
            } else {
                ModelError::Run {
                    file: self.file(),
                    message: e.to_string(),
                }
            }
        };
        let outputs = match options {
            Some(o) => session.run_with_options(values, o).map_err(run_error)?,
            None => session.run(values).map_err(run_error)?,
        };
        let mut result = Vec::with_capacity(wanted.len());
        for &index in wanted {
            let value = &outputs[index];
            let fail = |e: ort::Error| ModelError::Run {
                file: self.file(),
                message: e.to_string(),
            };
            let output = match self.outputs.get(index).map(|p| p.element) {
                Some(TensorElementType::Float16) => {
                    let (shape, data) = value.try_extract_tensor::<f16>().map_err(fail)?;
                    Output {
                        shape: dims(shape),
                        data: data.iter().map(|v| v.to_f32()).collect(),
                    }
                }
                _ => {
                    let (shape, data) = value.try_extract_tensor::<f32>().map_err(fail)?;
                    Output {
                        shape: dims(shape),
                        data: data.to_vec(),
                    }
                }
            };
            result.push(output);
        }
        Ok(result)
    }

    /// The output index by name, or an error that lists what the model has.
    pub fn require_output(&self, name: &str) -> Result<usize, ModelError> {
        self.output_index(name)
            .ok_or_else(|| ModelError::MissingOutput {
                file: self.file(),
                output: name.to_string(),
                available: self
                    .outputs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn convert(&self, port: &Port, feed: &Feed<'_>) -> Result<DynValue, ModelError> {
        let fail = |e: ort::Error| ModelError::Run {
            file: self.file(),
            message: e.to_string(),
        };
        // A declared rank-0 input (a scalar timestep) gets a scalar whatever the pipeline had.
        let shape_for = |shape: &[usize]| -> Vec<i64> {
            if port.shape.is_empty() {
                Vec::new()
            } else {
                shape.iter().map(|&d| d as i64).collect()
            }
        };
        let value: DynValue = match (feed, port.element) {
            (Feed::F32(shape, data), TensorElementType::Float32) => {
                Tensor::from_array((shape_for(shape), data.to_vec()))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::F32(shape, data), TensorElementType::Float16) => {
                let data: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::F32(shape, data), TensorElementType::Float64) => {
                let data: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            // A float timestep fed to an integer input is truncated, as diffusers' ONNX
            // pipelines do with `np.array([t], dtype=timestep_dtype)`.
            (Feed::F32(shape, data), TensorElementType::Int64) => {
                let data: Vec<i64> = data.iter().map(|&v| v as i64).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::F32(shape, data), TensorElementType::Int32) => {
                let data: Vec<i32> = data.iter().map(|&v| v as i32).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::I64(shape, data), TensorElementType::Int64) => {
                Tensor::from_array((shape_for(shape), data.to_vec()))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::I64(shape, data), TensorElementType::Int32) => {
                let data: Vec<i32> = data.iter().map(|&v| v as i32).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::I64(shape, data), TensorElementType::Float32) => {
                let data: Vec<f32> = data.iter().map(|&v| v as f32).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (Feed::I64(shape, data), TensorElementType::Float16) => {
                let data: Vec<f16> = data.iter().map(|&v| f16::from_f32(v as f32)).collect();
                Tensor::from_array((shape_for(shape), data))
                    .map_err(fail)?
                    .into_dyn()
            }
            (_, found) => {
                return Err(ModelError::UnsupportedType {
                    file: self.file(),
                    input: port.name.clone(),
                    found,
                    expected: "float32, float16, float64, int64 or int32",
                })
            }
        };
        Ok(value)
    }
}

fn dims(shape: &ort::value::Shape) -> Vec<usize> {
    shape.iter().map(|&d| d.max(0) as usize).collect()
}
