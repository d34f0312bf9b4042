//! [`Sequential`]: a network as a sequence of [`Layer`]s, in PyTorch `nn.Sequential` order, with
//! shape inference and the batched passes of THEORY.md §4 generalized to any layer (§7).

use super::error::{LayerId, NetError, NetResult};
use super::layer::{Act, Layer, Linear};
use super::tensor::{Shape, Tensor};
use crate::model::Mlp;

/// A network `f = layer_{L−1} ∘ … ∘ layer_0` whose output is a flat vector of `C` entries.
///
/// The parameter vector θ concatenates the layers' parameters in order (each layer's weight in
/// PyTorch layout, then its bias), which for an MLP is THEORY.md §0's order.
#[derive(Debug)]
pub struct Sequential {
    input_shape: Shape,
    layers: Vec<Box<dyn Layer>>,
    /// `shapes[j]` is the per-sample input shape of layer `j`; `shapes[L]` is the output shape.
    shapes: Vec<Shape>,
    /// `offsets[j]..offsets[j+1]` is layer `j`'s block of θ.
    offsets: Vec<usize>,
}

/// Everything a forward pass keeps for the backward and forward-mode passes: the input of every
/// layer and the output.
#[derive(Debug, Clone)]
pub struct NetCache {
    /// `inputs[j]` is layer `j`'s input (`inputs[0] = x`), `inputs[L]` the output `f(x)`.
    pub inputs: Vec<Tensor>,
}

impl NetCache {
    /// The network output `f(x)` (`b × C`).
    pub fn output(&self) -> &Tensor {
        self.inputs
            .last()
            .expect("a cache holds at least the input")
    }
    /// Number of samples `b`.
    pub fn batch_size(&self) -> usize {
        self.inputs[0].batch
    }
}

/// The name of layer `j` for error messages.
pub(crate) fn layer_id(j: usize, layer: &dyn Layer) -> LayerId {
    LayerId {
        index: j,
        kind: layer.kind(),
        name: layer.name().map(str::to_string),
    }
}

impl Sequential {
    /// Build a network: infers every layer's shape from `input_shape`, checks that each layer
    /// accepts its predecessor's output, that the output is flat `[C]` and that every parameter
    /// is finite. Errors name the layer (index, kind, name) and what it expected.
    pub fn new(input_shape: Shape, layers: Vec<Box<dyn Layer>>) -> NetResult<Self> {
        if input_shape.is_empty() {
            return Err(NetError::Input(format!(
                "input shape {input_shape} has no entries"
            )));
        }
        if layers.is_empty() {
            return Err(NetError::Spec {
                field: "layers".into(),
                message: "a network needs at least one layer".into(),
            });
        }
        let mut shapes = vec![input_shape];
        let mut offsets = vec![0];
        for (j, layer) in layers.iter().enumerate() {
            let got = shapes[j];
            let out = layer
                .output_shape(got)
                .map_err(|expected| NetError::Shape {
                    layer: layer_id(j, layer.as_ref()),
                    got: got.to_string(),
                    expected,
                })?;
            if out.is_empty() {
                return Err(NetError::Shape {
                    layer: layer_id(j, layer.as_ref()),
                    got: got.to_string(),
                    expected: format!("a non-empty output (got {out})"),
                });
            }
            let params = layer.params();
            if let Some(pos) = params.iter().position(|v| !v.is_finite()) {
                return Err(NetError::Layer {
                    layer: layer_id(j, layer.as_ref()),
                    message: format!(
                        "parameter {pos} is not finite ({}); expected finite parameters",
                        params[pos]
                    ),
                });
            }
            shapes.push(out);
            offsets.push(offsets[j] + layer.num_params());
        }
        let last = layers.len() - 1;
        if !matches!(shapes[layers.len()], Shape::Flat(_)) {
            return Err(NetError::Shape {
                layer: layer_id(last, layers[last].as_ref()),
                got: shapes[last].to_string(),
                expected: format!(
                    "the network's output must be a flat vector [C], but the last layer produces {}; end with flatten/linear",
                    shapes[layers.len()]
                ),
            });
        }
        Ok(Self {
            input_shape,
            layers,
            shapes,
            offsets,
        })
    }

    /// The same network as an [`Mlp`]: `Linear, Act, Linear, …, Linear` named `0, 2, 4, …` (the
    /// `nn.Sequential` names), so that the two engines can be cross-checked.
    pub fn from_mlp(mlp: &Mlp) -> Self {
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        for (j, d) in mlp.layers().iter().enumerate() {
            if j > 0 {
                layers.push(Box::new(Act(mlp.activation())));
            }
            layers.push(Box::new(Linear::new(
                Some(layers.len().to_string()),
                d.weight.clone(),
                d.bias.iter().copied().collect(),
            )));
        }
        Self::new(Shape::Flat(mlp.input_dim()), layers).expect("a valid Mlp is a valid Sequential")
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }
    /// Number of outputs `C`.
    pub fn output_dim(&self) -> usize {
        self.shapes[self.layers.len()].len()
    }
    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }
    /// The distinct activations, in the order they first occur (empty: the network is affine).
    pub fn activations(&self) -> Vec<crate::model::Activation> {
        let mut acts = Vec::new();
        for l in &self.layers {
            if let super::LayerSpec::Activation(a) = l.spec()
                && !acts.contains(&a)
            {
                acts.push(a);
            }
        }
        acts
    }
    /// `shapes()[j]` is layer `j`'s input shape; the last entry is the output shape.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }
    /// Layer `j`'s block of θ is `param_offsets()[j]..param_offsets()[j+1]`.
    pub fn param_offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// Number of parameters `P`.
    pub fn num_params(&self) -> usize {
        self.offsets[self.layers.len()]
    }
    /// θ, layer by layer (weight in PyTorch layout, then bias).
    pub fn params(&self) -> Vec<f64> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// The same architecture with parameters `theta` (θ order), re-validated.
    pub fn with_params(&self, theta: &[f64]) -> NetResult<Self> {
        if theta.len() != self.num_params() {
            return Err(NetError::Input(format!(
                "parameter vector has {} entries, the network has {}",
                theta.len(),
                self.num_params()
            )));
        }
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(j, l)| l.with_params(&theta[self.offsets[j]..self.offsets[j + 1]]))
            .collect();
        Self::new(self.input_shape, layers)
    }

    /// Check that `x` carries this network's input shape.
    fn check_input(&self, x: &Tensor) -> NetResult<()> {
        if x.shape != self.input_shape || x.data.len() != x.batch * x.shape.len() {
            return Err(NetError::Input(format!(
                "samples of shape {} ({} values for {} samples), expected {} (the network's input shape)",
                x.shape,
                x.data.len(),
                x.batch,
                self.input_shape
            )));
        }
        if x.batch == 0 {
            return Err(NetError::Input("no samples".into()));
        }
        Ok(())
    }

    /// Output `f(x)` (`b × C`).
    pub fn forward(&self, x: &Tensor) -> NetResult<Tensor> {
        self.check_input(x)?;
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h);
        }
        Ok(h)
    }

    /// Forward pass keeping every layer's input.
    pub fn forward_cache(&self, x: &Tensor) -> NetResult<NetCache> {
        self.check_input(x)?;
        let mut inputs = Vec::with_capacity(self.layers.len() + 1);
        inputs.push(x.clone());
        for (j, l) in self.layers.iter().enumerate() {
            let y = l.forward(&inputs[j]);
            inputs.push(y);
        }
        Ok(NetCache { inputs })
    }

    /// Backward pass for **all C outputs at once** (THEORY.md §4): starting from the identity
    /// cotangent (row `i·C + c` is `e_c`), returns `cot` with `cot[j]` the cotangent at layer
    /// `j`'s input, `b·C` rows: row `i·C + c` of `cot[j]` is `∂f_c(x_i)/∂(input of layer j)`.
    /// `cot[0]` holds the input gradients `∇_x f_c(x_i)`; `cot[L]` is the identity.
    pub fn backward_outputs(&self, cache: &NetCache) -> Vec<Tensor> {
        let (b, c) = (cache.batch_size(), self.output_dim());
        let mut eye = Tensor::zeros(b * c, Shape::Flat(c));
        for r in 0..b * c {
            eye.data[r * c + r % c] = 1.0;
        }
        self.backward_from(cache, eye)
    }

    /// Backward pass from any cotangent at the output (`reps` rows per sample); returns the
    /// cotangent at every layer's input, as [`Sequential::backward_outputs`].
    pub fn backward_from(&self, cache: &NetCache, cotangent: Tensor) -> Vec<Tensor> {
        let depth = self.layers.len();
        let mut cot = vec![cotangent];
        for j in (0..depth).rev() {
            let g = self.layers[j].vjp_input(&cache.inputs[j], cot.last().expect("non-empty"));
            cot.push(g);
        }
        cot.reverse();
        cot
    }

    /// Forward-mode product along input directions: `J_x(x_{r/reps}) dx_r` for every row of
    /// `dx` (`reps` rows per sample), independent of the backward pass (THEORY.md T1 "Check").
    pub fn jvp_input(&self, cache: &NetCache, dx: &Tensor) -> NetResult<Tensor> {
        if dx.shape != self.input_shape || !dx.batch.is_multiple_of(cache.batch_size()) {
            return Err(NetError::Input(format!(
                "tangent of shape {} with {} rows, expected {} with a multiple of {} rows",
                dx.shape,
                dx.batch,
                self.input_shape,
                cache.batch_size()
            )));
        }
        let mut t = dx.clone();
        for (j, l) in self.layers.iter().enumerate() {
            t = l.jvp_input(&cache.inputs[j], &t);
        }
        Ok(t)
    }

    /// Reverse-mode product `Σ_i J_iᵀ u_i` for cotangents `u` (`b × C`, or `reps` rows per
    /// sample): the parameter gradient of `Σ_r ⟨u_r, f(x_{r/reps})⟩`, flattened as θ.
    pub fn vjp_params(&self, cache: &NetCache, u: &Tensor) -> Vec<f64> {
        let cot = self.backward_from(cache, u.clone());
        let mut out = vec![0.0; self.num_params()];
        for (j, l) in self.layers.iter().enumerate() {
            let block = &mut out[self.offsets[j]..self.offsets[j + 1]];
            l.vjp_params(&cache.inputs[j], &cot[j + 1], block);
        }
        out
    }

    /// Forward-mode product `J_i v` for every sample (`b × C`), THEORY.md §4 "Gauss–Newton
    /// product" generalized: each layer adds its parameter tangent to the pushed-forward tangent.
    pub fn jvp_params(&self, cache: &NetCache, v: &[f64]) -> NetResult<Tensor> {
        if v.len() != self.num_params() {
            return Err(NetError::Input(format!(
                "parameter direction has {} entries, the network has {}",
                v.len(),
                self.num_params()
            )));
        }
        let mut t: Option<Tensor> = None;
        for (j, l) in self.layers.iter().enumerate() {
            let x = &cache.inputs[j];
            let pushed = t.map(|t| l.jvp_input(x, &t));
            let own = l.jvp_params(x, &v[self.offsets[j]..self.offsets[j + 1]]);
            t = match (pushed, own) {
                (Some(mut a), Some(b)) => {
                    a.data.iter_mut().zip(&b.data).for_each(|(p, q)| *p += q);
                    Some(a)
                }
                (a, b) => a.or(b),
            };
        }
        Ok(t.unwrap_or_else(|| Tensor::zeros(cache.batch_size(), self.shapes[self.layers.len()])))
    }
}
