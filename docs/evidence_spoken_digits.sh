#!/usr/bin/env bash
# Runs behind docs/evidence_spoken_digits.md (issue 11, evidence on ../shared/data/spoken_digits).
# Two streams (DCLS ablations, DelRec equal-budget networks), each run after run; seeds are
# added round by round (--seeds 0, then 0,1, then 0,1,2 into the same directory: finished seeds
# are reused), so an interrupted session still holds the same seeds for every variant.
# Three streams run side by side: DCLS dense, DCLS sparse, DelRec.
# Usage: docs/evidence_spoken_digits.sh DATA_DIR OUT_DIR [STREAM...]   (from the repository root)
#        STREAM: dcls_dense, dcls_sparse, delrec (default: all three)
set -u
D=${1:?data folder (train.h5, test.h5)}
OUT=${2:?output folder}
shift 2
STREAMS=("$@")
[ ${#STREAMS[@]} -eq 0 ] && STREAMS=(dcls_dense dcls_sparse delrec)
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
COMMON="data.root=$D data.train_file=train.h5 data.test_file=test.h5 data.validation=train_split
        data.cache_dir=$OUT/cache train.progress=false train.batch_size=64"
DCLS="train.epochs=8"      # reduced budget, the same for every variant (paper: 150 epochs, 2 x 256)
DELREC="train.epochs=20"   # (paper: 30 epochs)
dcls_dense_variants=(
  "dcls_shd_nodelay model.n_hidden=107"          # widened: 28,997 parameters vs 28,928
  "dcls_shd_fixed_random model.n_hidden=64"
  "dcls_shd_2l model.n_hidden=64"
)
dcls_sparse_variants=(
  "dcls_shd_sparse10_nodelay model.n_hidden=126" # widened: 3,224 active vs 3,216
  "dcls_shd_sparse10_fixed_random model.n_hidden=64"
  "dcls_shd_sparse10_learned model.n_hidden=64"
)
delrec_variants=(delrec_shd_small_snn delrec_shd_small_ff delrec_shd_small_rec)
run() {  # stream seeds config [overrides...]
  local stream=$1 seeds=$2 cfg=$3; shift 3
  echo "== $(date -u +%T) $cfg --seeds $seeds" >> "$OUT/$stream.log"
  python3 -m ctsnn.cli train "$cfg" --out "$OUT/$cfg" --seeds "$seeds" $COMMON "$@" \
      >> "$OUT/$stream.log" 2>&1
}
dcls_stream() {  # name variant...
  local name=$1; shift
  local variants=("$@")
  for seeds in 0 0,1 0,1,2; do
    for v in "${variants[@]}"; do
      # shellcheck disable=SC2086
      set -- $v
      local cfg=$1; shift
      # shellcheck disable=SC2086
      run "$name" "$seeds" "$cfg" $DCLS "$@"
    done
  done
}
delrec_stream() {
  for seeds in 0 0,1 0,1,2; do
    for v in "${delrec_variants[@]}"; do
      # shellcheck disable=SC2086
      run delrec "$seeds" "$v" $DELREC
    done
  done
}
for stream in "${STREAMS[@]}"; do
  case $stream in
    dcls_dense) dcls_stream dcls_dense "${dcls_dense_variants[@]}" & ;;
    dcls_sparse) dcls_stream dcls_sparse "${dcls_sparse_variants[@]}" & ;;
    delrec) delrec_stream & ;;
    *) echo "unknown stream $stream" >&2; exit 2 ;;
  esac
done
wait
