#!/usr/bin/env bash
# Side-by-side benchmark of flatcert against the peers of ../shared/peers, in one run on the same
# machine (README "Performance"). Usage: bench/compare.sh [PEER_DIR] [WORK_DIR]
# Needs the peers' Python environment: python3 -m venv /tmp/peer && /tmp/peer/bin/pip install jax numpy safetensors
set -euo pipefail
PEERS=${1:-../shared/peers}
WORK=${2:-/tmp/flatcert-bench}
PY=${PY:-/tmp/peer/bin/python}
cd "$(dirname "$0")/.."
cargo build --release --quiet
FC=target/release/flatcert
mkdir -p "$WORK"
[ -f "$WORK/w1/x.npy" ] || $PY "$PEERS/jax_peer.py" make --sizes 784,512,512,10 --n 8192 --out "$WORK/w1"
[ -f "$WORK/w2/x.npy" ] || $PY "$PEERS/jax_peer.py" make --sizes 784,512,512,10 --n 2048 --out "$WORK/w2"
now() { date +%s.%N; }
# OpenBLAS uses this processor's own kernels only without these overrides (peers/README.md).
NUMPY_ENV="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"

echo "== W1: per-sample norms k = 1,2,4, 784-512-512-10 relu, n = 8192, f64"
for rep in 1 2 3; do
  t0=$(now); $FC measure --model "$WORK/w1/model.safetensors" --x "$WORK/w1/x.npy" --k 1,2,4 --no-curvature --quiet > /dev/null; t1=$(now)
  np=$($NUMPY_ENV $PY "$PEERS/numpy_ghost.py" "$WORK/w1/model.safetensors" "$WORK/w1/x.npy" | $PY -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])')
  echo "rep $rep: flatcert $(echo "$t1 - $t0" | bc) s (incl. loading)   numpy_ghost ${np} s (compute only)"
done
if [ "${WITH_JAX:-0}" = 1 ]; then
  t0=$(now); $PY "$PEERS/jax_peer.py" moments --model "$WORK/w1/model.safetensors" --x "$WORK/w1/x.npy" --f64 > /dev/null; t1=$(now)
  echo "jax vmap(jacrev) moments: $(echo "$t1 - $t0" | bc) s"
fi
