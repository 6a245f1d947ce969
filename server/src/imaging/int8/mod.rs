//! The opt-in int8 UNet for CPUs: dynamic quantisation of the weights of every `MatMul` and
//! `Conv`, as ONNX Runtime's `quantize_dynamic` does it (measured here as the fastest of its
//! variants on a real-size SD 1.5 UNet: MatMul and Conv, unsigned 8-bit, one scale per
//! tensor). Weights become uint8 with a scale and zero point; activations are quantised as the
//! step runs (`DynamicQuantizeLinear`); `MatMulInteger` / `ConvInteger` accumulate in int32,
//! and the result is scaled back to float. ONNX Runtime fuses the MatMul pattern into its
//! `DynamicQuantizeMatMul` kernel when it loads the graph.
//!
//! Only standard ONNX operators are written, so the graph loads on any provider, and every
//! other field of the model is kept as it was (see `wire`). The result goes to `unet_int8/`
//! beside `unet/`; the registry offers it as a separate model (`<id>-int8`), never as the
//! default.

pub mod compare;
mod tensors;
pub mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tensors::{Tensor, WeightsFile, FLOAT, UINT8};
use wire::{Message, WireError};

/// The folder of a model that holds its int8 UNet.
pub const FOLDER: &str = "unet_int8";
/// Suffix of the registry id under which a model's int8 UNet is offered.
pub const ID_SUFFIX: &str = "-int8";
const GRAPH: &str = "model.onnx";
const WEIGHTS: &str = "model.onnx.data";

// ModelProto, GraphProto, NodeProto, AttributeProto, OperatorSetIdProto field numbers.
const MODEL_OPSET: u32 = 8;
const MODEL_GRAPH: u32 = 7;
const MODEL_METADATA: u32 = 14;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_NAME: u32 = 3;
const NODE_OP: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const NODE_DOMAIN: u32 = 7;
const ATTR_NAME: u32 = 1;
const ATTR_INT: u32 = 3;
const ATTR_TYPE: u32 = 20;
const ATTR_TYPE_INT: u64 = 2;
const OPSET_DOMAIN: u32 = 1;
const OPSET_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("{0}")]
    Model(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Int8Error {
    fn io(path: &Path, e: std::io::Error) -> Int8Error {
        Int8Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<WireError> for Int8Error {
    fn from(e: WireError) -> Self {
        Int8Error::Model(e.to_string())
    }
}

/// What one quantisation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub matmuls: usize,
    pub convs: usize,
    /// Weight bytes quantised (fp32) and what they became (uint8).
    pub float_bytes: u64,
    pub int8_bytes: u64,
}

/// Writes `<model>/unet_int8/` from `<model>/unet/model.onnx`. The folder appears whole or
/// not at all (written beside it, then renamed), replacing an older one.
pub fn quantize_model(model_dir: &Path) -> Result<Summary, Int8Error> {
    let source = model_dir.join("unet").join(GRAPH);
    let dest = model_dir.join(FOLDER);
    let staging = model_dir.join(format!(".{FOLDER}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Int8Error::io(&staging, e))?;
    let result = quantize_file(&source, &staging).and_then(|summary| {
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staging, &dest).map_err(|e| Int8Error::io(&dest, e))?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// The int8 UNet of a model folder, when one has been made.
pub fn unet_of(model_dir: &Path) -> Option<PathBuf> {
    let graph = model_dir.join(FOLDER).join(GRAPH);
    graph.is_file().then_some(graph)
}

/// Quantises one ONNX file into `dest_dir/model.onnx` (+ `model.onnx.data`).
pub fn quantize_file(source: &Path, dest_dir: &Path) -> Result<Summary, Int8Error> {
    let source_dir = source.parent().unwrap_or(Path::new("."));
    let bytes = std::fs::read(source).map_err(|e| Int8Error::io(source, e))?;
    let model = Message::parse(&bytes)?;
    check_opset(&model)?;
    let graph = Message::parse(
        model
            .bytes(MODEL_GRAPH)
            .last()
            .ok_or_else(|| Int8Error::Model("the file has no graph".into()))?,
    )?;

    let mut initializers: HashMap<String, Tensor<'_>> = HashMap::new();
    for t in graph.bytes(GRAPH_INITIALIZER) {
        let t = Tensor::parse(t)?;
        initializers.insert(t.name().to_string(), t);
    }
    let nodes = graph
        .bytes(GRAPH_NODE)
        .map(Message::parse)
        .collect::<Result<Vec<_>, _>>()?;
    // How many readers each initializer has: one that loses all of them is dropped.
    let mut readers: HashMap<String, usize> = HashMap::new();
    for node in &nodes {
        for input in node.strings(NODE_INPUT) {
            *readers.entry(input.to_string()).or_default() += 1;
        }
    }
    for output in graph.bytes(GRAPH_OUTPUT) {
        let name = Message::parse(output)?.str(1).to_string();
        *readers.entry(name).or_default() += 1;
    }

    let mut weights = WeightsFile::create(dest_dir, WEIGHTS)?;
    let mut rewrite = Rewrite {
        source_dir,
        initializers: &initializers,
        weights: &mut weights,
        new_nodes: Vec::new(),
        new_initializers: Vec::new(),
        activations: HashMap::new(),
        quantised_weights: HashMap::new(),
        summary: Summary::default(),
    };
    for node in &nodes {
        if !rewrite.node(node)? {
            rewrite.new_nodes.push(node.to_bytes());
            continue;
        }
        // The weight (and a Conv's bias) lost this reader to their quantised copies.
        for input in node.strings(NODE_INPUT).iter().skip(1) {
            if let Some(n) = readers.get_mut(*input) {
                *n = n.saturating_sub(1);
            }
        }
    }
    let Rewrite {
        new_nodes,
        new_initializers,
        summary,
        ..
    } = rewrite;
    if summary.matmuls + summary.convs == 0 {
        return Err(Int8Error::Model(
            "no fp32 MatMul or Conv weights to quantise (int8 starts from an fp32 export)".into(),
        ));
    }

    // The graph again, field by field: nodes replaced in place, initializers that lost every
    // reader dropped, external ones copied into the new data file.
    let mut out_graph = Message::default();
    let mut nodes_written = false;
    for field in &graph.fields {
        match field.number {
            GRAPH_NODE if nodes_written => {}
            GRAPH_NODE => {
                for node in &new_nodes {
                    out_graph.push_bytes(GRAPH_NODE, node.as_slice());
                }
                nodes_written = true;
            }
            GRAPH_INITIALIZER => {
                let wire::Value::Bytes(b) = &field.value else {
                    continue;
                };
                let t = Tensor::parse(b.as_ref())?;
                if readers.get(t.name()).copied().unwrap_or(0) == 0 {
                    continue;
                }
                if t.is_external() {
                    let size = tensors::element_size(t.data_type()).ok_or_else(|| {
                        Int8Error::Model(format!(
                            "initializer `{}` has a type Easel cannot copy",
                            t.name()
                        ))
                    })?;
                    out_graph.push_message(GRAPH_INITIALIZER, &weights.copy(&t, source_dir, size)?);
                } else {
                    out_graph.fields.push(field.clone());
                }
            }
            // Old exports (IR 3) also list every initializer as a graph input: a dropped one
            // must go from there too, or it would become an input the caller has to feed.
            GRAPH_INPUT => {
                let wire::Value::Bytes(b) = &field.value else {
                    continue;
                };
                let name = Message::parse(b.as_ref())?.str(1).to_string();
                let dropped = initializers.contains_key(&name)
                    && readers.get(&name).copied().unwrap_or(0) == 0;
                if !dropped {
                    out_graph.fields.push(field.clone());
                }
            }
            _ => out_graph.fields.push(field.clone()),
        }
    }
    for t in &new_initializers {
        out_graph.push_message(GRAPH_INITIALIZER, t);
    }
    weights.finish()?;

    let mut out_model = Message::default();
    for field in &model.fields {
        if field.number == MODEL_GRAPH {
            out_model.push_message(MODEL_GRAPH, &out_graph);
        } else {
            out_model.fields.push(field.clone());
        }
    }
    let mut note = Message::default();
    note.push_str(1, "easel.quantization");
    note.push_str(
        2,
        "dynamic uint8: MatMul and Conv weights, one scale per tensor",
    );
    out_model.push_message(MODEL_METADATA, &note);
    let path = dest_dir.join(GRAPH);
    std::fs::write(&path, out_model.to_bytes()).map_err(|e| Int8Error::io(&path, e))?;
    Ok(summary)
}

/// `DynamicQuantizeLinear` needs opset 11 of the default domain.
fn check_opset(model: &Message<'_>) -> Result<(), Int8Error> {
    for entry in model.bytes(MODEL_OPSET) {
        let entry = Message::parse(entry)?;
        if matches!(entry.str(OPSET_DOMAIN), "" | "ai.onnx") {
            let version = entry.varint(OPSET_VERSION).unwrap_or(0);
            if version < 11 {
                return Err(Int8Error::Model(format!(
                    "the graph uses ONNX opset {version}; int8 needs 11 or later (export again)"
                )));
            }
            return Ok(());
        }
    }
    Err(Int8Error::Model("the graph names no ONNX opset".into()))
}

/// The three names of a quantised tensor: a weight's initializers, or an activation's
/// outputs from one `DynamicQuantizeLinear`.
#[derive(Clone)]
struct Quantised {
    values: String,
    scale: String,
    zero_point: String,
}

impl Quantised {
    fn named(prefix: &str) -> Quantised {
        Quantised {
            values: format!("{prefix}/values"),
            scale: format!("{prefix}/scale"),
            zero_point: format!("{prefix}/zero_point"),
        }
    }
}

struct Rewrite<'g, 'w> {
    source_dir: &'g Path,
    initializers: &'g HashMap<String, Tensor<'g>>,
    weights: &'w mut WeightsFile,
    new_nodes: Vec<Vec<u8>>,
    new_initializers: Vec<Message<'static>>,
    /// Activations already quantised: Q, K and V projections read the same one.
    activations: HashMap<String, Quantised>,
    quantised_weights: HashMap<String, Quantised>,
    summary: Summary,
}

impl Rewrite<'_, '_> {
    /// Emits the int8 form of `node` and returns true, or returns false to keep it as it is.
    fn node(&mut self, node: &Message<'_>) -> Result<bool, Int8Error> {
        if !matches!(node.str(NODE_DOMAIN), "" | "ai.onnx") {
            return Ok(false);
        }
        let op = node.str(NODE_OP);
        let inputs = node.strings(NODE_INPUT);
        let outputs = node.strings(NODE_OUTPUT);
        let [output] = outputs[..] else {
            return Ok(false);
        };
        let initializers = self.initializers;
        let float_weight = |name: &str, ranks: std::ops::RangeInclusive<usize>| {
            initializers.get(name).filter(|t| {
                t.data_type() == FLOAT && t.dims().is_ok_and(|d| ranks.contains(&d.len()))
            })
        };
        // The activation must be computed, not a constant (constant folding's job).
        let computed = |name: &str| !name.is_empty() && !initializers.contains_key(name);
        let prefix = format!("easel_int8/{output}");
        match (op, &inputs[..]) {
            ("MatMul", [a, w]) if computed(a) && float_weight(w, 2..=2).is_some() => {
                let x = self.activation(a);
                let w = self.weight(w)?;
                let int = format!("{prefix}/int32");
                self.emit(
                    "MatMulInteger",
                    &[&x.values, &w.values, &x.zero_point, &w.zero_point],
                    &int,
                    Vec::new(),
                );
                self.rescale(&int, &x, &w, output, &prefix);
                self.summary.matmuls += 1;
                Ok(true)
            }
            ("Conv", [x, w, rest @ ..]) if computed(x) && float_weight(w, 3..=5).is_some() => {
                let dims = initializers[*w].dims()?;
                let (channels, rank) = (dims[0], dims.len());
                let bias = match rest {
                    [] | [""] => None,
                    [b] => match float_weight(b, 1..=1) {
                        Some(t) => Some(t),
                        // A computed bias is rare enough to leave that Conv in fp32.
                        None => return Ok(false),
                    },
                    _ => return Ok(false),
                };
                let xq = self.activation(x);
                let wq = self.weight(w)?;
                let int = format!("{prefix}/int32");
                let attributes = node.bytes(NODE_ATTRIBUTE).map(<[u8]>::to_vec).collect();
                self.emit(
                    "ConvInteger",
                    &[&xq.values, &wq.values, &xq.zero_point, &wq.zero_point],
                    &int,
                    attributes,
                );
                match bias {
                    None => self.rescale(&int, &xq, &wq, output, &prefix),
                    Some(bias) => {
                        let unbiased = format!("{prefix}/unbiased");
                        self.rescale(&int, &xq, &wq, &unbiased, &prefix);
                        // [C] → [1, C, 1, 1] (one 1 per spatial axis) to add per channel.
                        let mut dims = vec![1i64; rank];
                        dims[1] = channels;
                        let data = bias.raw_bytes(self.source_dir, 4)?;
                        let name = format!("{prefix}/bias");
                        let t = self.weights.tensor(&name, &dims, FLOAT, &data)?;
                        self.new_initializers.push(t);
                        self.emit("Add", &[&unbiased, &name], output, Vec::new());
                    }
                }
                self.summary.convs += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// int32 → float, times the product of the two scales.
    fn rescale(&mut self, int: &str, x: &Quantised, w: &Quantised, output: &str, prefix: &str) {
        let float = format!("{prefix}/float");
        let scale = format!("{prefix}/scale");
        let mut to = Message::default();
        to.push_str(ATTR_NAME, "to");
        to.push_varint(ATTR_TYPE, ATTR_TYPE_INT);
        to.push_varint(ATTR_INT, FLOAT);
        self.emit("Cast", &[int], &float, vec![to.to_bytes()]);
        self.emit("Mul", &[&x.scale, &w.scale], &scale, Vec::new());
        self.emit("Mul", &[&float, &scale], output, Vec::new());
    }

    fn activation(&mut self, name: &str) -> Quantised {
        if let Some(q) = self.activations.get(name) {
            return q.clone();
        }
        let prefix = format!("easel_int8/{name}/dynamic");
        let q = Quantised::named(&prefix);
        let mut node = Message::default();
        node.push_str(NODE_INPUT, name);
        for output in [&q.values, &q.scale, &q.zero_point] {
            node.push_str(NODE_OUTPUT, output);
        }
        node.push_str(NODE_NAME, &prefix);
        node.push_str(NODE_OP, "DynamicQuantizeLinear");
        self.new_nodes.push(node.to_bytes());
        self.activations.insert(name.to_string(), q.clone());
        q
    }

    fn weight(&mut self, name: &str) -> Result<Quantised, Int8Error> {
        if let Some(q) = self.quantised_weights.get(name) {
            return Ok(q.clone());
        }
        let tensor = &self.initializers[name];
        let dims = tensor.dims()?;
        let floats = tensor.floats(self.source_dir)?;
        let (values, scale, zero_point) = quantise_u8(&floats);
        let q = Quantised::named(&format!("easel_int8/{name}"));
        let tensors = [
            self.weights.tensor(&q.values, &dims, UINT8, &values)?,
            self.weights
                .tensor(&q.scale, &[], FLOAT, &scale.to_le_bytes())?,
            self.weights
                .tensor(&q.zero_point, &[], UINT8, &[zero_point])?,
        ];
        self.new_initializers.extend(tensors);
        self.summary.float_bytes += floats.len() as u64 * 4;
        self.summary.int8_bytes += values.len() as u64;
        self.quantised_weights.insert(name.to_string(), q.clone());
        Ok(q)
    }

    fn emit(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Vec<u8>>) {
        let mut node = Message::default();
        for input in inputs {
            node.push_str(NODE_INPUT, input);
        }
        node.push_str(NODE_OUTPUT, output);
        // Named after its output, which is unique in the graph (names must be).
        node.push_str(NODE_NAME, &format!("easel_int8/{op}/{output}"));
        node.push_str(NODE_OP, op);
        for attribute in attributes {
            node.push_bytes(NODE_ATTRIBUTE, attribute);
        }
        self.new_nodes.push(node.to_bytes());
    }
}

/// Asymmetric uint8 quantisation with one scale per tensor, as ONNX Runtime's
/// `quantize_data` does it: the range always holds 0 (so 0 is exact), scale = range / 255,
/// values rounded half to even.
pub fn quantise_u8(values: &[f32]) -> (Vec<u8>, f32, u8) {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if hi <= lo {
        return (vec![0; values.len()], 1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let q = values
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8)
        .collect();
    (q, scale, zero_point as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_weights_are_within_half_a_step() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.37).sin() * 0.2 - 0.05)
            .collect();
        let (q, scale, zp) = quantise_u8(&values);
        for (v, q) in values.iter().zip(&q) {
            let back = (f32::from(*q) - f32::from(zp)) * scale;
            assert!((back - v).abs() <= scale * 0.5 + 1e-7, "{v} → {back}");
        }
        // Zero is exact, so zero padding stays zero.
        let (q, scale, zp) = quantise_u8(&[0.0, 0.5, -0.25]);
        assert_eq!(q[0], zp);
        assert!(scale > 0.0);
        // All-zero and non-finite weights do not divide by zero.
        assert_eq!(quantise_u8(&[0.0, 0.0]), (vec![0, 0], 1.0, 0));
        let (q, _, _) = quantise_u8(&[f32::NAN, 1.0]);
        assert_eq!(q.len(), 2);
    }
}
