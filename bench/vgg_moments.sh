#!/usr/bin/env bash
# Per-sample moments g_W(k), g_x(k), k = 1, 2, 4, of the seed's VGG config 'A' (3x32x32, K = 2,
# f64): flatcert::net (examples/vgg_moments.rs) against JAX vmap(jacrev) (bench/jax_vgg_moments.py)
# on the same model and data, side by side, with peak memory from /usr/bin/time -v (issue 14 item 8).
# Usage: bench/vgg_moments.sh [N] [WORK_DIR]   (N must be a multiple of 100 for the JAX chunking)
# Needs the peers' Python environment: python3 -m venv /tmp/peer && /tmp/peer/bin/pip install jax numpy safetensors
set -euo pipefail
N=${1:-1000}
WORK=${2:-/tmp/flatcert-vgg-bench}
PY=${PY:-/tmp/peer/bin/python}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example vgg_moments
mkdir -p "$WORK"
echo "== flatcert::net per_sample_stats, n = $N"
/usr/bin/time -v target/release/examples/vgg_moments "$N" "$WORK" 2> "$WORK/flatcert.time"
grep -E "Elapsed|Maximum resident|User time" "$WORK/flatcert.time"
if [ -x "$PY" ]; then
  echo "== JAX vmap(jacrev), n = $N"
  /usr/bin/time -v "$PY" bench/jax_vgg_moments.py "$WORK" --chunk 100 2> "$WORK/jax.time"
  grep -E "Elapsed|Maximum resident|User time" "$WORK/jax.time"
else
  echo "(no $PY: JAX peer skipped)"
fi
