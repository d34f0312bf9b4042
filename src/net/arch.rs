//! The architecture spec (issue 14 item 2): one JSON format, stored as the safetensors
//! `__metadata__` key [`ARCH_METADATA_KEY`] or given as a `--arch` file, and the loading of a
//! state_dict's weights by layer name (`<name>.weight`, `<name>.bias`). docs/cnn.md documents
//! the format and ships a Python writer.
//!
//! A state_dict has no strides, paddings or pools; the spec supplies them, the tensors supply
//! every size they determine (channels, features), and the optional size fields of the spec are
//! cross-checked against the tensors.

use std::collections::{BTreeMap, HashMap};

use nalgebra::DMatrix;
use serde_json::{Map, Value, json};

use super::batchnorm::BatchNorm2d;
use super::conv::{Conv2d, Window};
use super::error::{NetError, NetResult};
use super::layer::{Act, Flatten, Layer, Linear};
use super::pool::{AvgPool2d, MaxPool2d};
use super::sequential::Sequential;
use super::tensor::Shape;
use crate::model::Activation;

/// The safetensors metadata key holding the architecture JSON.
pub const ARCH_METADATA_KEY: &str = "flatcert_arch";

/// The layer types the spec accepts, as listed in error messages.
pub const SUPPORTED_TYPES: &str = "conv2d, linear, batchnorm2d (eval mode), maxpool2d, avgpool2d, flatten, relu, leaky_relu, tanh, sigmoid, softplus, identity";

/// One layer of an [`ArchSpec`].
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    /// `nn.Conv2d` with tensors `<name>.weight` `[out, in, k_h, k_w]` and `<name>.bias` `[out]`.
    Conv2d {
        /// state_dict name.
        name: String,
        /// Optional cross-checks against the weight tensor.
        in_channels: Option<usize>,
        /// Optional cross-check against the weight tensor.
        out_channels: Option<usize>,
        /// Kernel, stride, padding.
        window: Window,
    },
    /// `nn.Linear` with tensors `<name>.weight` `[out, in]` and `<name>.bias` `[out]`.
    Linear {
        /// state_dict name.
        name: String,
        /// Optional cross-check against the weight tensor.
        in_features: Option<usize>,
        /// Optional cross-check against the weight tensor.
        out_features: Option<usize>,
    },
    /// `nn.BatchNorm2d` in eval mode ([`super::BatchNorm2d`]) with tensors `<name>.weight`,
    /// `<name>.bias`, `<name>.running_mean`, `<name>.running_var` (all `[C]`) and optionally
    /// `<name>.num_batches_tracked` (ignored).
    BatchNorm2d {
        /// state_dict name.
        name: String,
        /// Optional cross-check against the tensors.
        num_features: Option<usize>,
        /// ε (PyTorch's default 1e-5).
        eps: f64,
    },
    /// `nn.MaxPool2d(kernel, stride)`.
    MaxPool2d {
        /// Kernel.
        kernel: (usize, usize),
        /// Stride (default: the kernel, as in PyTorch).
        stride: (usize, usize),
    },
    /// `nn.AvgPool2d(kernel, stride)`.
    AvgPool2d {
        /// Kernel.
        kernel: (usize, usize),
        /// Stride (default: the kernel).
        stride: (usize, usize),
    },
    /// `nn.Flatten()`.
    Flatten,
    /// An elementwise activation.
    Activation(Activation),
}

/// A network architecture: the per-sample input shape `[C, H, W]` (or `[F]`) and the layers in
/// `nn.Sequential` order.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSpec {
    /// Per-sample input shape.
    pub input_shape: Shape,
    /// The layers.
    pub layers: Vec<LayerSpec>,
}

fn spec_err(field: impl Into<String>, message: impl Into<String>) -> NetError {
    NetError::Spec {
        field: field.into(),
        message: message.into(),
    }
}

/// A positive integer, or a pair of them (PyTorch accepts both for kernel/stride/padding).
fn pair(v: &Value, field: &str, allow_zero: bool) -> NetResult<(usize, usize)> {
    let one = |x: &Value| -> Option<usize> {
        let u = usize::try_from(x.as_u64()?).ok()?;
        (allow_zero || u > 0).then_some(u)
    };
    let what = if allow_zero {
        "non-negative"
    } else {
        "positive"
    };
    let bad = || {
        spec_err(
            field,
            format!("{v}: expected a {what} integer or a list [h, w] of {what} integers"),
        )
    };
    match v {
        Value::Array(a) if a.len() == 2 => {
            Ok((one(&a[0]).ok_or_else(bad)?, one(&a[1]).ok_or_else(bad)?))
        }
        Value::Number(_) => one(v).map(|u| (u, u)).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn opt_usize(obj: &Map<String, Value>, key: &str, field: &str) -> NetResult<Option<usize>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .filter(|&u| u > 0)
            .map(Some)
            .ok_or_else(|| {
                spec_err(
                    format!("{field}.{key}"),
                    format!("{v}: expected a positive integer"),
                )
            }),
    }
}

fn parse_layer(v: &Value, field: &str) -> NetResult<LayerSpec> {
    let obj = v
        .as_object()
        .ok_or_else(|| spec_err(field, "expected an object with a \"type\""))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| spec_err(format!("{field}.type"), "missing or not a string"))?;
    let allowed: &[&str] = match ty {
        "conv2d" => &[
            "type",
            "name",
            "in_channels",
            "out_channels",
            "kernel",
            "stride",
            "padding",
            "dilation",
            "groups",
        ],
        "linear" => &["type", "name", "in_features", "out_features"],
        "batchnorm2d" => &[
            "type",
            "name",
            "num_features",
            "eps",
            "momentum",
            "affine",
            "track_running_stats",
        ],
        "maxpool2d" | "avgpool2d" => &["type", "kernel", "stride"],
        "leaky_relu" => &["type", "negative_slope"],
        "flatten" | "relu" | "tanh" | "sigmoid" | "softplus" | "identity" => &["type"],
        other => {
            return Err(spec_err(
                format!("{field}.type"),
                format!("unknown layer type '{other}'; supported: {SUPPORTED_TYPES}"),
            ));
        }
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(spec_err(
            format!("{field}.{k}"),
            format!(
                "unknown field for a {ty} layer; allowed: {}",
                allowed.join(", ")
            ),
        ));
    }
    let name = || -> NetResult<String> {
        obj.get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                spec_err(
                    format!("{field}.name"),
                    format!("a {ty} layer needs its state_dict name (e.g. \"features.0\" for the tensors features.0.weight and features.0.bias)"),
                )
            })
    };
    let get_pair =
        |key: &str, default: Option<(usize, usize)>, zero: bool| -> NetResult<(usize, usize)> {
            match (obj.get(key), default) {
                (Some(v), _) => pair(v, &format!("{field}.{key}"), zero),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(spec_err(
                    format!("{field}.{key}"),
                    format!("missing; a {ty} layer needs it"),
                )),
            }
        };
    Ok(match ty {
        "conv2d" => {
            for key in ["dilation", "groups"] {
                if let Some(v) = obj.get(key)
                    && pair(v, &format!("{field}.{key}"), false)? != (1, 1)
                {
                    return Err(spec_err(
                        format!("{field}.{key}"),
                        format!("{v}: only {key} = 1 is supported"),
                    ));
                }
            }
            LayerSpec::Conv2d {
                name: name()?,
                in_channels: opt_usize(obj, "in_channels", field)?,
                out_channels: opt_usize(obj, "out_channels", field)?,
                window: Window {
                    kernel: get_pair("kernel", None, false)?,
                    stride: get_pair("stride", Some((1, 1)), false)?,
                    padding: get_pair("padding", Some((0, 0)), true)?,
                },
            }
        }
        "batchnorm2d" => {
            let flag = |key: &str| -> NetResult<bool> {
                match obj.get(key) {
                    None => Ok(true),
                    Some(v) => v.as_bool().ok_or_else(|| {
                        spec_err(
                            format!("{field}.{key}"),
                            format!("{v}: expected true or false"),
                        )
                    }),
                }
            };
            if !flag("track_running_stats")? {
                return Err(spec_err(
                    format!("{field}.track_running_stats"),
                    "false: without running statistics BatchNorm2d normalizes by the statistics \
                     of each batch (train mode), which couples the samples, so no per-sample \
                     loss exists (THEORY §0); only eval-mode batch normalization is supported",
                ));
            }
            if !flag("affine")? {
                return Err(spec_err(
                    format!("{field}.affine"),
                    "false: only affine batch normalization (weight and bias tensors) is supported",
                ));
            }
            let eps = match obj.get("eps") {
                None => 1e-5,
                Some(v) => v
                    .as_f64()
                    .filter(|e| e.is_finite() && *e >= 0.0)
                    .ok_or_else(|| {
                        spec_err(
                            format!("{field}.eps"),
                            format!("{v}: expected a number ≥ 0"),
                        )
                    })?,
            };
            if let Some(v) = obj.get("momentum")
                && !(v.is_null() || v.is_number())
            {
                return Err(spec_err(
                    format!("{field}.momentum"),
                    format!("{v}: expected a number or null (unused in eval mode)"),
                ));
            }
            LayerSpec::BatchNorm2d {
                name: name()?,
                num_features: opt_usize(obj, "num_features", field)?,
                eps,
            }
        }
        "linear" => LayerSpec::Linear {
            name: name()?,
            in_features: opt_usize(obj, "in_features", field)?,
            out_features: opt_usize(obj, "out_features", field)?,
        },
        "maxpool2d" | "avgpool2d" => {
            let kernel = get_pair("kernel", None, false)?;
            let stride = get_pair("stride", Some(kernel), false)?;
            if ty == "maxpool2d" {
                LayerSpec::MaxPool2d { kernel, stride }
            } else {
                LayerSpec::AvgPool2d { kernel, stride }
            }
        }
        "flatten" => LayerSpec::Flatten,
        "leaky_relu" => {
            let alpha = match obj.get("negative_slope") {
                None => 0.01,
                Some(v) => v
                    .as_f64()
                    .filter(|a| (0.0..=1.0).contains(a))
                    .ok_or_else(|| {
                        spec_err(
                            format!("{field}.negative_slope"),
                            format!("{v}: expected a number in [0, 1]"),
                        )
                    })?,
            };
            LayerSpec::Activation(Activation::LeakyRelu { alpha })
        }
        other => LayerSpec::Activation(
            Activation::parse(other)
                .map_err(|e| spec_err(format!("{field}.type"), e.to_string()))?,
        ),
    })
}

impl ArchSpec {
    /// Parse the JSON format of docs/cnn.md. Errors name the JSON field (`layers[3].type`).
    pub fn from_json(text: &str) -> NetResult<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| spec_err("(document)", format!("not valid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| {
            spec_err(
                "(document)",
                "expected an object {\"input_shape\": …, \"layers\": […]}",
            )
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["input_shape", "layers"].contains(&k.as_str()))
        {
            return Err(spec_err(
                k.as_str(),
                "unknown field; allowed: input_shape, layers",
            ));
        }
        let dims: Option<Vec<usize>> =
            obj.get("input_shape")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|d| {
                            d.as_u64()
                                .and_then(|u| usize::try_from(u).ok())
                                .filter(|&u| u > 0)
                        })
                        .collect()
                });
        let input_shape = dims.as_deref().and_then(Shape::from_dims).ok_or_else(|| {
            spec_err(
                "input_shape",
                "missing or invalid: expected [C, H, W] (or [F]) of positive integers",
            )
        })?;
        let layers = obj
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| spec_err("layers", "missing or not a list"))?;
        let layers = layers
            .iter()
            .enumerate()
            .map(|(j, l)| parse_layer(l, &format!("layers[{j}]")))
            .collect::<NetResult<Vec<_>>>()?;
        Ok(Self {
            input_shape,
            layers,
        })
    }

    /// The canonical JSON (every optional size filled in when `net` is given).
    pub fn to_json(&self) -> String {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| match l {
                LayerSpec::Conv2d { name, in_channels, out_channels, window } => {
                    let mut o = json!({"type": "conv2d", "name": name,
                        "kernel": [window.kernel.0, window.kernel.1],
                        "stride": [window.stride.0, window.stride.1],
                        "padding": [window.padding.0, window.padding.1]});
                    if let Some(c) = in_channels {
                        o["in_channels"] = json!(c);
                    }
                    if let Some(c) = out_channels {
                        o["out_channels"] = json!(c);
                    }
                    o
                }
                LayerSpec::Linear { name, in_features, out_features } => {
                    let mut o = json!({"type": "linear", "name": name});
                    if let Some(c) = in_features {
                        o["in_features"] = json!(c);
                    }
                    if let Some(c) = out_features {
                        o["out_features"] = json!(c);
                    }
                    o
                }
                LayerSpec::BatchNorm2d { name, num_features, eps } => {
                    let mut o = json!({"type": "batchnorm2d", "name": name, "eps": eps});
                    if let Some(c) = num_features {
                        o["num_features"] = json!(c);
                    }
                    o
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    json!({"type": "maxpool2d", "kernel": [kernel.0, kernel.1], "stride": [stride.0, stride.1]})
                }
                LayerSpec::AvgPool2d { kernel, stride } => {
                    json!({"type": "avgpool2d", "kernel": [kernel.0, kernel.1], "stride": [stride.0, stride.1]})
                }
                LayerSpec::Flatten => json!({"type": "flatten"}),
                LayerSpec::Activation(Activation::LeakyRelu { alpha }) => {
                    json!({"type": "leaky_relu", "negative_slope": alpha})
                }
                LayerSpec::Activation(a) => json!({"type": a.name()}),
            })
            .collect();
        json!({"input_shape": self.input_shape.dims(), "layers": layers}).to_string()
    }

    /// The spec of a built network, every optional size filled in.
    pub fn of(net: &Sequential) -> Self {
        Self {
            input_shape: net.input_shape(),
            layers: net.layers().iter().map(|l| l.spec()).collect(),
        }
    }

    /// Build the network from decoded tensors (`name → (shape, values)`). Every tensor must be
    /// used: a left-over tensor means the spec does not describe the checkpoint (BatchNorm
    /// statistics, a missing layer), and is an error naming it.
    pub fn build(
        &self,
        tensors: &BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    ) -> NetResult<Sequential> {
        let mut used: HashMap<&str, ()> = HashMap::new();
        let mut take = |tname: String,
                        want: &dyn Fn(&[usize]) -> Result<(), String>|
         -> NetResult<(Vec<usize>, Vec<f64>)> {
            let (key, (shape, vals)) =
                tensors
                    .get_key_value(&tname)
                    .ok_or_else(|| NetError::Weights {
                        tensor: tname.clone(),
                        message:
                            "missing from the checkpoint (layers without bias are not supported)"
                                .into(),
                    })?;
            want(shape).map_err(|m| NetError::Weights {
                tensor: tname.clone(),
                message: format!("shape {shape:?}: {m}"),
            })?;
            used.insert(key.as_str(), ());
            Ok((shape.clone(), vals.clone()))
        };
        let mut layers: Vec<Box<dyn Layer>> = Vec::with_capacity(self.layers.len());
        let mut counters: Vec<String> = Vec::new();
        for l in &self.layers {
            let boxed: Box<dyn Layer> = match l {
                LayerSpec::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    window,
                } => {
                    let (ws, wv) = take(format!("{name}.weight"), &|s| match *s {
                        [o, i, kh, kw]
                            if (kh, kw) == window.kernel
                                && o > 0
                                && i > 0
                                && in_channels.is_none_or(|c| c == i)
                                && out_channels.is_none_or(|c| c == o) =>
                        {
                            Ok(())
                        }
                        _ => Err(format!(
                            "expected [out_channels{}, in_channels{}, {}, {}] for conv2d layer '{name}'",
                            out_channels.map(|c| format!(" = {c}")).unwrap_or_default(),
                            in_channels.map(|c| format!(" = {c}")).unwrap_or_default(),
                            window.kernel.0,
                            window.kernel.1
                        )),
                    })?;
                    let o = ws[0];
                    let (_, bv) = take(format!("{name}.bias"), &|s| {
                        if s == [o] {
                            Ok(())
                        } else {
                            Err(format!("expected [{o}]"))
                        }
                    })?;
                    let c = Conv2d::new(Some(name.clone()), ws[1], o, *window, wv, bv).ok_or_else(
                        || NetError::Weights {
                            tensor: format!("{name}.weight"),
                            message: "inconsistent length".into(),
                        },
                    )?;
                    Box::new(c)
                }
                LayerSpec::Linear {
                    name,
                    in_features,
                    out_features,
                } => {
                    let (ws, wv) = take(format!("{name}.weight"), &|s| match *s {
                        [o, i]
                            if o > 0
                                && i > 0
                                && in_features.is_none_or(|c| c == i)
                                && out_features.is_none_or(|c| c == o) =>
                        {
                            Ok(())
                        }
                        _ => Err(format!(
                            "expected [out_features{}, in_features{}] for linear layer '{name}'",
                            out_features.map(|c| format!(" = {c}")).unwrap_or_default(),
                            in_features.map(|c| format!(" = {c}")).unwrap_or_default()
                        )),
                    })?;
                    let o = ws[0];
                    let (_, bv) = take(format!("{name}.bias"), &|s| {
                        if s == [o] {
                            Ok(())
                        } else {
                            Err(format!("expected [{o}]"))
                        }
                    })?;
                    Box::new(Linear::new(
                        Some(name.clone()),
                        DMatrix::from_row_slice(o, ws[1], &wv),
                        bv,
                    ))
                }
                LayerSpec::BatchNorm2d {
                    name,
                    num_features,
                    eps,
                } => {
                    let mut vectors = Vec::with_capacity(4);
                    for part in ["weight", "bias", "running_mean", "running_var"] {
                        let want_c = vectors
                            .first()
                            .map(|v: &Vec<f64>| v.len())
                            .or(*num_features);
                        let (_, v) = take(format!("{name}.{part}"), &|s| match (s, want_c) {
                            ([c], Some(w)) if *c == w => Ok(()),
                            ([c], None) if *c > 0 => Ok(()),
                            _ => Err(format!(
                                "expected [num_features{}] for batchnorm2d layer '{name}'",
                                want_c.map(|c| format!(" = {c}")).unwrap_or_default()
                            )),
                        })?;
                        vectors.push(v);
                    }
                    // The step counter PyTorch stores (an integer) has no role in eval mode.
                    let counter = format!("{name}.num_batches_tracked");
                    if tensors.contains_key(&counter) {
                        counters.push(counter);
                    }
                    let var = vectors.pop().unwrap_or_default();
                    let mean = vectors.pop().unwrap_or_default();
                    let beta = vectors.pop().unwrap_or_default();
                    let gamma = vectors.pop().unwrap_or_default();
                    if let Some(bad) = var.iter().position(|v| v.is_nan() || *v < 0.0) {
                        return Err(NetError::Weights {
                            tensor: format!("{name}.running_var"),
                            message: format!("entry {bad} is {}: a variance must be ≥ 0", var[bad]),
                        });
                    }
                    Box::new(
                        BatchNorm2d::new(Some(name.clone()), gamma, beta, mean, var, *eps)
                            .ok_or_else(|| NetError::Weights {
                                tensor: format!("{name}.running_var"),
                                message: format!("running_var + eps = 0 for some channel (eps = {eps}): the normalization divides by 0"),
                            })?,
                    )
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    Box::new(MaxPool2d::new(*kernel, *stride))
                }
                LayerSpec::AvgPool2d { kernel, stride } => {
                    Box::new(AvgPool2d::new(*kernel, *stride))
                }
                LayerSpec::Flatten => Box::new(Flatten),
                LayerSpec::Activation(a) => Box::new(Act(*a)),
            };
            layers.push(boxed);
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !used.contains_key(k.as_str()) && !counters.contains(k))
        {
            return Err(NetError::Weights {
                tensor: extra.clone(),
                message: format!(
                    "present in the checkpoint but not used by the architecture spec (supported layers: {SUPPORTED_TYPES}; check the layer names)"
                ),
            });
        }
        Sequential::new(self.input_shape, layers)
    }
}
