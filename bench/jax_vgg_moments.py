"""JAX peer of examples/vgg_moments.rs (issue 14 item 8): the per-sample moments g_W(k), g_x(k),
k = 1, 2, 4, of VGG config 'A' by materialized per-sample Jacobians, vmap(jacrev), in f64.

Usage: /tmp/peer/bin/python bench/jax_vgg_moments.py DIR [--chunk 100]
DIR holds model.safetensors and x.npy as written by `vgg_moments N DIR`. Prints JSON with the
moments (to compare with flatcert's) and the wall time of the moment computation (jit compile
included in a separate field).
"""
import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

FEATURES = ["features.0", "features.3", "features.6", "features.9", "features.12"]
CLASSIFIER = ["classifier.0", "classifier.2"]


def forward(params, x):
    """One sample x [3, 32, 32] -> [K]: conv3x3 pad 1, relu, maxpool 2x2 (x5), flatten, 64-128-K."""
    h = x[None]
    for name in FEATURES:
        w, b = params[name + ".weight"], params[name + ".bias"]
        h = jax.lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + b[None, :, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = h.reshape(-1)
    w, b = params["classifier.0.weight"], params["classifier.0.bias"]
    h = jax.nn.relu(w @ h + b)
    w, b = params["classifier.2.weight"], params["classifier.2.bias"]
    return w @ h + b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--chunk", type=int, default=100)
    a = ap.parse_args()
    params = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in load_file(f"{a.dir}/model.safetensors").items()}
    x = np.load(f"{a.dir}/x.npy").reshape(-1, 3, 32, 32)
    n = x.shape[0]
    ks = (1, 2, 4)

    @jax.jit
    def chunk_sums(xc):
        jw = jax.vmap(jax.jacrev(forward, argnums=0), in_axes=(None, 0))(params, xc)
        jx = jax.vmap(jax.jacrev(forward, argnums=1), in_axes=(None, 0))(params, xc)
        leaves = jax.tree_util.tree_leaves(jw)
        sw = jnp.stack([sum(jnp.sum(l ** (2 * k)) for l in leaves) for k in ks])
        sx = jnp.stack([jnp.sum(jx ** (2 * k)) for k in ks])
        return sw, sx

    t0 = time.perf_counter()
    jax.block_until_ready(chunk_sums(jnp.asarray(x[: a.chunk])))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sw = np.zeros(3)
    sx = np.zeros(3)
    for s in range(0, n, a.chunk):
        xc = x[s:s + a.chunk]
        if xc.shape[0] != a.chunk:
            raise SystemExit(f"--chunk {a.chunk} must divide n = {n}")
        w_, x_ = chunk_sums(jnp.asarray(xc))
        sw += np.asarray(w_)
        sx += np.asarray(x_)
    wall = time.perf_counter() - t0
    g_w = [(sw[i] / n) ** (1 / (2 * k)) for i, k in enumerate(ks)]
    g_x = [(sx[i] / n) ** (1 / (2 * k)) for i, k in enumerate(ks)]
    print(json.dumps({"peer": "jax vmap(jacrev), f64", "n": n, "chunk": a.chunk, "wall_s": wall,
                      "compile_s": compile_s, "g_W": g_w, "g_x": g_x, "jax": jax.__version__,
                      "devices": [str(d) for d in jax.devices()]}))


if __name__ == "__main__":
    main()
