#!/usr/bin/env bash
# Side-by-side benchmark of flatcert against the peers of ../shared/peers, in one run on the same
# machine (README "Performance"). Usage: bench/compare.sh [PEER_DIR] [WORK_DIR]
# Needs the peers' Python environment: python3 -m venv /tmp/peer && /tmp/peer/bin/pip install jax numpy safetensors
set -euo pipefail
PEERS=${1:-../shared/peers}
WORK=${2:-/tmp/flatcert-bench-work}
PY=${PY:-/tmp/peer/bin/python}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin flatcert --example sharpness
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

echo "== W2: lambda_max(G) to 1e-6 true relative error, 784-512-512-10 relu, n = 2048, f64"
# Reference: flatcert's Lanczos converged to an estimated relative error of 1e-13.
REF=$(target/release/examples/sharpness "$WORK/w2/model.safetensors" "$WORK/w2/x.npy" "$WORK/w2/y.npy" 1e-13)
echo "reference: $REF"
for rep in 1 2; do
  FC_OUT=$(target/release/examples/sharpness "$WORK/w2/model.safetensors" "$WORK/w2/x.npy" "$WORK/w2/y.npy" 1e-6)
  # The peer without its stopping rule (tol 0), recording (products, estimate, seconds) per step.
  PEER_OUT=$($PY "$PEERS/jax_peer.py" sharpness --model "$WORK/w2/model.safetensors" --x "$WORK/w2/x.npy" \
      --y "$WORK/w2/y.npy" --act relu --f64 --history --iters "${PEER_ITERS:-600}" --tol 0)
  $PY - "$REF" "$FC_OUT" "$PEER_OUT" <<'PYEOF'
import json, sys
ref = json.loads(sys.argv[1])["lambda_max"]
fc = json.loads(sys.argv[2]); peer = json.loads(sys.argv[3])
fc_err = abs(fc["lambda_max"] - ref) / ref
# Time to reach 1e-6 true relative error and stay there.
t_peer, n_peer = None, None
for it, est, sec in peer["history"]:
    if abs(est - ref) / ref <= 1e-6:
        if t_peer is None:
            t_peer, n_peer = sec, it
    else:
        t_peer, n_peer = None, None
print(f"flatcert: {fc['wall_s']:.2f} s, {fc['products']} products, true rel err {fc_err:.1e}, "
      f"estimated {fc['error_estimate'] / fc['lambda_max']:.1e} (setup {fc['setup_s']:.2f} s)")
if t_peer is None:
    last = peer["history"][-1]
    print(f"peer power iteration: not within 1e-6 after {last[0]} products ({last[2]:.1f} s), "
          f"true rel err {abs(last[1] - ref) / ref:.1e}")
else:
    print(f"peer power iteration: {t_peer:.2f} s, {n_peer} products to 1e-6; "
          f"ratio flatcert/peer = {fc['wall_s'] / t_peer:.3f}")
PYEOF
done

echo "== W1 certify at scale (issue 11): nC = 81920 > --gram-limit, B = 64"
# η = 0.002 must certify T4 and T5 (confidence 1 − 1e-9, exit 0); η = 0.006 must violate T4 (exit 1).
for lr in 0.002 0.006; do
  t0=$(now)
  set +e
  $FC certify --model "$WORK/w1/model.safetensors" --x "$WORK/w1/x.npy" --y "$WORK/w1/y.npy" \
      --lr "$lr" --batch 64 --quiet --json "$WORK/w1_cert_$lr.json" > /dev/null
  rc=$?
  set -e
  t1=$(now)
  prod=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['measurements']['gauss_newton_lanczos_products']['value'])" "$WORK/w1_cert_$lr.json")
  echo "lr $lr: exit $rc, $(echo "$t1 - $t0" | bc) s, $prod Lanczos products"
done
for delta in 1e-3 1e-9 1e-15; do
  $FC certify --model "$WORK/w1/model.safetensors" --x "$WORK/w1/x.npy" --y "$WORK/w1/y.npy" \
      --lr 0.002 --batch 64 --quiet --delta "$delta" --json "$WORK/w1_delta.json" > /dev/null || true
  echo "delta $delta: $($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['measurements']['gauss_newton_lanczos_products']['value'])" "$WORK/w1_delta.json") products"
done
