//! `nn.Conv2d` (groups = 1, dilation = 1, zero padding) by im2col + GEMM (THEORY.md §7).
//!
//! Layout: for one sample, the im2col matrix `A` is `T × K` column-major (`T = H_out·W_out`
//! output positions, `K = C_in·k_h·k_w` patch entries): entry `(t, k)` sits at `k·T + t`, with
//! `k = (c_in·k_h + u)·k_w + v` — PyTorch's weight order. PyTorch's weight `[C_out, C_in, k_h, k_w]`
//! read as a column-major `K × C_out` matrix `Wᵗ` then gives the output as `Y = A·Wᵗ`
//! (`T × C_out` column-major), which is exactly NCHW. One GEMM per sample; samples in parallel.

use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use rayon::prelude::*;

use super::arch::LayerSpec;
use super::layer::{Layer, sum_reps};
use super::tensor::{Shape, Tensor};

/// Spatial hyper-parameters of a convolution or pooling window: kernel, stride, zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `(k_h, k_w)`.
    pub kernel: (usize, usize),
    /// `(s_h, s_w)`.
    pub stride: (usize, usize),
    /// `(p_h, p_w)`, zeros on each side.
    pub padding: (usize, usize),
}

impl Window {
    /// Output size `((H + 2p_h − k_h)/s_h + 1, …)` (floor, PyTorch's `ceil_mode = False`), or
    /// what was expected.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), String> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(format!(
                "kernel {:?} and stride {:?} must be positive",
                self.kernel, self.stride
            ));
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            return Err(format!(
                "the {kh}×{kw} kernel does not fit the {h}×{w} input with padding {:?}: expected H + 2·p_h ≥ k_h and W + 2·p_w ≥ k_w",
                self.padding
            ));
        }
        Ok(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }
}

/// Geometry of one convolution on one input size.
#[derive(Debug, Clone, Copy)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    win: Window,
}

impl Geom {
    fn t(&self) -> usize {
        self.ho * self.wo
    }
    fn k(&self) -> usize {
        self.c * self.win.kernel.0 * self.win.kernel.1
    }
    /// Call `f(k·T + t, input index)` for every in-bounds patch entry.
    #[inline]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let (kh, kw) = self.win.kernel;
        let (sh, sw) = self.win.stride;
        let (ph, pw) = self.win.padding;
        let t = self.t();
        for ci in 0..self.c {
            for u in 0..kh {
                for v in 0..kw {
                    let k = (ci * kh + u) * kw + v;
                    for oy in 0..self.ho {
                        let iy = (oy * sh + u) as isize - ph as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let base = (ci * self.h + iy as usize) * self.w;
                        for ox in 0..self.wo {
                            let ix = (ox * sw + v) as isize - pw as isize;
                            if ix < 0 || ix >= self.w as isize {
                                continue;
                            }
                            f(k * t + oy * self.wo + ox, base + ix as usize);
                        }
                    }
                }
            }
        }
    }
    fn im2col(&self, x: &[f64]) -> Vec<f64> {
        let mut a = vec![0.0; self.k() * self.t()];
        self.for_each_tap(|ai, xi| a[ai] = x[xi]);
        a
    }
    fn col2im_add(&self, a: &[f64], gx: &mut [f64]) {
        self.for_each_tap(|ai, xi| gx[xi] += a[ai]);
    }
}

/// A 2-D convolution `nn.Conv2d(C_in, C_out, (k_h, k_w), stride, padding)` with bias
/// (groups = 1, dilation = 1, zero padding). Bilinear in `(W, x)`, so T1b holds for it as a first
/// layer (THEORY.md §7(a)).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    name: Option<String>,
    c_in: usize,
    c_out: usize,
    win: Window,
    /// PyTorch layout `[C_out, C_in, k_h, k_w]` row-major = `Wᵗ` (`K × C_out`) column-major.
    weight: Vec<f64>,
    /// `W` as a column-major `C_out × K` matrix (for the input VJP `gA = gY·W`).
    w_mat: DMatrix<f64>,
    bias: Vec<f64>,
}

impl Conv2d {
    /// A convolution from PyTorch's weight layout `[C_out, C_in, k_h, k_w]` (row-major, length
    /// `C_out·C_in·k_h·k_w`) and a bias of length `C_out`; `None` if a length does not match.
    pub fn new(
        name: Option<String>,
        c_in: usize,
        c_out: usize,
        win: Window,
        weight: Vec<f64>,
        bias: Vec<f64>,
    ) -> Option<Self> {
        let k = c_in * win.kernel.0 * win.kernel.1;
        if weight.len() != k * c_out || bias.len() != c_out {
            return None;
        }
        let w_mat = DMatrix::from_row_slice(c_out, k, &weight);
        Some(Self {
            name,
            c_in,
            c_out,
            win,
            weight,
            w_mat,
            bias,
        })
    }
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.c_in
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.c_out
    }
    /// Kernel, stride and padding.
    pub fn window(&self) -> Window {
        self.win
    }
    /// The weight in PyTorch layout `[C_out, C_in, k_h, k_w]`, row-major.
    pub fn weight(&self) -> &[f64] {
        &self.weight
    }
    /// The bias (`C_out`).
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }
    fn geom(&self, s: Shape) -> Geom {
        let Shape::Image { c, h, w } = s else {
            unreachable!("shape inference admits only images into conv2d")
        };
        let (ho, wo) = self
            .win
            .output_hw(h, w)
            .expect("shape inference checked the window");
        Geom {
            c,
            h,
            w,
            ho,
            wo,
            win: self.win,
        }
    }
    fn out_shape(&self, g: &Geom) -> Shape {
        Shape::Image {
            c: self.c_out,
            h: g.ho,
            w: g.wo,
        }
    }
    fn wt(&self) -> DMatrixView<'_, f64> {
        DMatrixView::from_slice(&self.weight, self.weight.len() / self.c_out, self.c_out)
    }
    /// `out ← A(x)·Wᵗ (+ bias)` for each row of `x` (any batch).
    fn apply(&self, x: &Tensor, wt: DMatrixView<'_, f64>, bias: Option<&[f64]>) -> Tensor {
        let g = self.geom(x.shape);
        let (t, k) = (g.t(), g.k());
        let shape = self.out_shape(&g);
        let mut out = Tensor::zeros(x.batch, shape);
        out.data
            .par_chunks_mut(shape.len())
            .enumerate()
            .for_each(|(r, o)| {
                let a = g.im2col(x.row(r));
                let av = DMatrixView::from_slice(&a, t, k);
                let mut ov = DMatrixViewMut::from_slice(o, t, self.c_out);
                ov.gemm(1.0, &av, &wt, 0.0);
                if let Some(b) = bias {
                    for (mut col, bv) in ov.column_iter_mut().zip(b) {
                        col.add_scalar_mut(*bv);
                    }
                }
            });
        out
    }
    /// For one sample: `Aᵢᵀ·[gY_{i,1} … gY_{i,reps}]`, a `K × (reps·C_out)` matrix whose column
    /// block `c` is rep `c`'s weight gradient in PyTorch layout (one GEMM, THEORY.md §7(e)).
    /// `gy_block` holds the sample's `reps` cotangent rows, contiguous.
    fn sample_weight_grads(&self, g: &Geom, x_row: &[f64], gy_block: &[f64]) -> DMatrix<f64> {
        let (t, k) = (g.t(), g.k());
        let a = g.im2col(x_row);
        let av = DMatrixView::from_slice(&a, t, k);
        let cols = gy_block.len() / t;
        let gyi = DMatrixView::from_slice(gy_block, t, cols);
        let mut gw = DMatrix::zeros(k, cols);
        gw.gemm_tr(1.0, &av, &gyi, 0.0);
        gw
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> String {
        "conv2d".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Conv2d {
            name: self.name.clone().unwrap_or_default(),
            in_channels: Some(self.c_in),
            out_channels: Some(self.c_out),
            window: self.win,
        }
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let expected = format!(
            "expected an image [{}, H, W] (weight [{}, {}, {}, {}])",
            self.c_in, self.c_out, self.c_in, self.win.kernel.0, self.win.kernel.1
        );
        match input {
            Shape::Image { c, h, w } if c == self.c_in => {
                let (ho, wo) = self.win.output_hw(h, w)?;
                Ok(Shape::Image {
                    c: self.c_out,
                    h: ho,
                    w: wo,
                })
            }
            _ => Err(expected),
        }
    }
    fn num_params(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
    fn params(&self) -> Vec<f64> {
        let mut p = self.weight.clone();
        p.extend_from_slice(&self.bias);
        p
    }
    fn with_params(&self, theta: &[f64]) -> Box<dyn Layer> {
        let nw = self.weight.len();
        assert_eq!(theta.len(), nw + self.c_out, "conv2d: parameter length");
        let c = Conv2d::new(
            self.name.clone(),
            self.c_in,
            self.c_out,
            self.win,
            theta[..nw].to_vec(),
            theta[nw..].to_vec(),
        );
        Box::new(c.expect("lengths checked above"))
    }
    fn weight_len(&self) -> Option<usize> {
        Some(self.weight.len())
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        self.apply(x, self.wt(), Some(&self.bias))
    }
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor {
        let g = self.geom(x.shape);
        let (t, k) = (g.t(), g.k());
        let mut gx = Tensor::zeros(gy.batch, x.shape);
        let len = x.row_len();
        gx.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            let gyv = DMatrixView::from_slice(gy.row(r), t, self.c_out);
            let mut ga = DMatrix::zeros(t, k);
            ga.gemm(1.0, &gyv, &self.w_mat, 0.0);
            g.col2im_add(ga.as_slice(), o);
        });
        gx
    }
    fn jvp_input(&self, _x: &Tensor, dx: &Tensor) -> Tensor {
        self.apply(dx, self.wt(), None)
    }
    fn vjp_params(&self, x: &Tensor, gy: &Tensor, out: &mut [f64]) {
        let s = sum_reps(gy, x.batch);
        let g = self.geom(x.shape);
        let (nw, len) = (self.weight.len(), gy.row_len());
        let acc = (0..x.batch)
            .into_par_iter()
            .fold(
                || vec![0.0; self.num_params()],
                |mut acc, i| {
                    let block = &s[i * len..(i + 1) * len];
                    let gw = self.sample_weight_grads(&g, x.row(i), block);
                    for (a, v) in acc[..nw].iter_mut().zip(gw.as_slice()) {
                        *a += v;
                    }
                    for (a, col) in acc[nw..].iter_mut().zip(block.chunks(g.t())) {
                        *a += col.iter().sum::<f64>();
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0; self.num_params()],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        for (o, a) in out.iter_mut().zip(acc) {
            *o += a;
        }
    }
    fn jvp_params(&self, x: &Tensor, v: &[f64]) -> Option<Tensor> {
        let nw = self.weight.len();
        let vt = DMatrixView::from_slice(&v[..nw], nw / self.c_out, self.c_out);
        Some(self.apply(x, vt, Some(&v[nw..])))
    }
    fn row_param_grads(&self, x: &Tensor, gy: &Tensor) -> Vec<f64> {
        let reps = gy.reps_over(x.batch);
        let g = self.geom(x.shape);
        let (p, nw, len) = (self.num_params(), self.weight.len(), gy.row_len());
        let mut out = vec![0.0; gy.batch * p];
        out.par_chunks_mut(reps * p)
            .enumerate()
            .for_each(|(i, block)| {
                let gyb = &gy.data[i * reps * len..(i + 1) * reps * len];
                let gw = self.sample_weight_grads(&g, x.row(i), gyb);
                for (c, row) in block.chunks_mut(p).enumerate() {
                    row[..nw].copy_from_slice(&gw.as_slice()[c * nw..(c + 1) * nw]);
                    let gyr = &gyb[c * len..(c + 1) * len];
                    for (b, col) in row[nw..].iter_mut().zip(gyr.chunks(g.t())) {
                        *b = col.iter().sum();
                    }
                }
            });
        out
    }
}
