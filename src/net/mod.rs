//! The layer engine for convolutional networks (issue 14, THEORY.md §7): a network is a
//! [`Sequential`] of [`Layer`]s in PyTorch `nn.Sequential` order — [`Linear`], [`Act`]
//! (activations), [`Conv2d`], [`BatchNorm2d`] (eval mode), [`MaxPool2d`], [`AvgPool2d`],
//! [`Flatten`] — on batched NCHW f64
//! [`Tensor`]s, with forward, backward for all C outputs (VJP), forward mode (JVP) and parameter
//! gradients.
//!
//! The dense MLP engine ([`crate::model::Mlp`] and `measure`) stays the fast path for dense
//! networks; [`Sequential::from_mlp`] converts an MLP so that both engines can be cross-checked.

mod arch;
mod batchnorm;
mod conv;
mod curvature;
mod error;
mod gram;
mod ibp;
mod ibp_pool;
mod layer;
mod load;
mod opnorm;
mod per_sample;
mod pool;
mod sequential;
mod tensor;

pub use arch::{ARCH_METADATA_KEY, ArchSpec, LayerSpec, SUPPORTED_TYPES};
pub use batchnorm::BatchNorm2d;
pub use conv::{Conv2d, Window};
pub use curvature::{
    NetCurvatureOperator, is_piecewise_linear, jacobian_chain_length, net_forward_cache_bytes,
};
pub use error::{LayerId, NetError, NetResult};
pub use gram::{
    JacobianBlock, NetCurvatureStats, build_gram, jacobian_block, net_gram_memory_bytes,
    net_gram_rounding_length, per_sample_curvature, stacked_jacobian,
};
pub use ibp::{
    NetIbp, net_jacobian_norm_bounds, net_local_lipschitz, net_output_enclosure,
    net_pairwise_lipschitz,
};
pub use layer::{Act, Flatten, Layer, Linear, PowerSums};
pub use load::{ArchSource, LoadedNet, in_file, load_net, load_net_bytes, net_to_safetensors};
pub use opnorm::{
    ConvNormBounds, NetOpNorms, TRIG_HYPOTHESIS, activation_slope, avgpool_opnorm_upper,
    circular_grid, conv_opnorm_bounds, max_window_cover, maxpool_lipschitz, net_opnorms,
};
pub use per_sample::{NetPerSample, PerSampleOptions, loss_gradient_norms, per_sample_stats};
pub use pool::{AvgPool2d, MaxPool2d};
pub use sequential::{NetCache, Sequential};
pub use tensor::{Shape, Tensor};
