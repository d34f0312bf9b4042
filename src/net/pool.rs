//! `nn.MaxPool2d` and `nn.AvgPool2d` (kernel and stride, overlapping or not; no padding,
//! `ceil_mode = False`), THEORY.md §7(d).

use rayon::prelude::*;

use super::arch::LayerSpec;
use super::conv::Window;
use super::layer::Layer;
use super::tensor::{Shape, Tensor};

/// Geometry of a pooling window on one input size.
#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    win: Window,
}

impl PoolGeom {
    fn of(win: Window, s: Shape) -> Self {
        let Shape::Image { c, h, w } = s else {
            unreachable!("shape inference admits only images into a pool")
        };
        let (ho, wo) = win.output_hw(h, w).expect("shape inference checked");
        Self {
            c,
            h,
            w,
            ho,
            wo,
            win,
        }
    }
    fn out_shape(&self) -> Shape {
        Shape::Image {
            c: self.c,
            h: self.ho,
            w: self.wo,
        }
    }
    /// The input indices of output `(ch, oy, ox)`'s window, in row-major scan order.
    #[inline]
    fn window(&self, ch: usize, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
        let (kh, kw) = self.win.kernel;
        let (sh, sw) = self.win.stride;
        let base = ch * self.h * self.w;
        (0..kh)
            .flat_map(move |u| (0..kw).map(move |v| base + (oy * sh + u) * self.w + (ox * sw + v)))
    }
    /// Output index and window for every output of one sample.
    fn outputs(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..self.c).flat_map(move |ch| {
            (0..self.ho).flat_map(move |oy| {
                (0..self.wo).map(move |ox| ((ch * self.ho + oy) * self.wo + ox, ch, oy, ox))
            })
        })
    }
}

fn pool_output_shape(kind: &str, win: Window, input: Shape) -> Result<Shape, String> {
    match input {
        Shape::Image { c, h, w } => {
            let (ho, wo) = win.output_hw(h, w)?;
            Ok(Shape::Image { c, h: ho, w: wo })
        }
        Shape::Flat(_) => Err(format!("expected an image [C, H, W] for {kind}")),
    }
}

/// `nn.MaxPool2d(kernel, stride)`: the max of each window. Its derivative takes the **first**
/// largest entry of the window in row-major order (PyTorch's CPU tie rule); the engine's passes
/// are exact wherever the maximum is unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    win: Window,
}

impl MaxPool2d {
    /// A max-pool with this kernel and stride (no padding).
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        Self {
            win: Window {
                kernel,
                stride,
                padding: (0, 0),
            },
        }
    }
    /// Kernel and stride.
    pub fn window(&self) -> Window {
        self.win
    }
    /// For each output of one sample, the input index of its (first) maximum.
    fn argmax(&self, g: &PoolGeom, x: &[f64]) -> Vec<usize> {
        g.outputs()
            .map(|(_, ch, oy, ox)| {
                let mut best = usize::MAX;
                for i in g.window(ch, oy, ox) {
                    if best == usize::MAX || x[i] > x[best] || x[i].is_nan() {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }
    /// Route tangents (`forward = true`: `dy = dx[argmax]`) or cotangents (`gx[argmax] += gy`).
    fn route(&self, x: &Tensor, t: &Tensor, forward: bool) -> Tensor {
        let g = PoolGeom::of(self.win, x.shape);
        let reps = t.reps_over(x.batch);
        let (in_len, out_len) = (x.row_len(), g.out_shape().len());
        let mut out = if forward {
            Tensor::zeros(t.batch, g.out_shape())
        } else {
            Tensor::zeros(t.batch, x.shape)
        };
        let chunk = reps * if forward { out_len } else { in_len };
        out.data
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, block)| {
                let am = self.argmax(&g, x.row(i));
                for rep in 0..reps {
                    let tr = t.row(i * reps + rep);
                    if forward {
                        let o = &mut block[rep * out_len..(rep + 1) * out_len];
                        for (oj, &a) in o.iter_mut().zip(&am) {
                            *oj = tr[a];
                        }
                    } else {
                        let o = &mut block[rep * in_len..(rep + 1) * in_len];
                        for (&gj, &a) in tr.iter().zip(&am) {
                            o[a] += gj;
                        }
                    }
                }
            });
        out
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> String {
        "maxpool2d".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::MaxPool2d {
            kernel: self.win.kernel,
            stride: self.win.stride,
        }
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        pool_output_shape("maxpool2d", self.win, input)
    }
    fn with_params(&self, _theta: &[f64]) -> Box<dyn Layer> {
        Box::new(*self)
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let g = PoolGeom::of(self.win, x.shape);
        let mut y = Tensor::zeros(x.batch, g.out_shape());
        let len = y.row_len();
        y.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            let xr = x.row(r);
            for (j, ch, oy, ox) in g.outputs() {
                o[j] = g
                    .window(ch, oy, ox)
                    .map(|i| xr[i])
                    .fold(f64::NEG_INFINITY, f64::max);
            }
        });
        y
    }
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor {
        self.route(x, gy, false)
    }
    fn jvp_input(&self, x: &Tensor, dx: &Tensor) -> Tensor {
        self.route(x, dx, true)
    }
}

/// `nn.AvgPool2d(kernel, stride)`: the mean of each window (linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool2d {
    win: Window,
}

impl AvgPool2d {
    /// An average pool with this kernel and stride (no padding).
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        Self {
            win: Window {
                kernel,
                stride,
                padding: (0, 0),
            },
        }
    }
    /// Kernel and stride.
    pub fn window(&self) -> Window {
        self.win
    }
    fn scale(&self) -> f64 {
        1.0 / (self.win.kernel.0 * self.win.kernel.1) as f64
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> String {
        "avgpool2d".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::AvgPool2d {
            kernel: self.win.kernel,
            stride: self.win.stride,
        }
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        pool_output_shape("avgpool2d", self.win, input)
    }
    fn with_params(&self, _theta: &[f64]) -> Box<dyn Layer> {
        Box::new(*self)
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let g = PoolGeom::of(self.win, x.shape);
        let s = self.scale();
        let mut y = Tensor::zeros(x.batch, g.out_shape());
        let len = y.row_len();
        y.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            let xr = x.row(r);
            for (j, ch, oy, ox) in g.outputs() {
                o[j] = s * g.window(ch, oy, ox).map(|i| xr[i]).sum::<f64>();
            }
        });
        y
    }
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor {
        let g = PoolGeom::of(self.win, x.shape);
        let s = self.scale();
        let mut gx = Tensor::zeros(gy.batch, x.shape);
        let len = x.row_len();
        gx.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            let gr = gy.row(r);
            for (j, ch, oy, ox) in g.outputs() {
                for i in g.window(ch, oy, ox) {
                    o[i] += s * gr[j];
                }
            }
        });
        gx
    }
    fn jvp_input(&self, _x: &Tensor, dx: &Tensor) -> Tensor {
        self.forward(dx)
    }
}
