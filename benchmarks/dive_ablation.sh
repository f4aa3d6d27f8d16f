#!/usr/bin/env bash
# The DivE paper's similarity ablation on the shapes benchmark: the same model (recipes/dive_shapes.yaml)
# trained with each of four set similarities, a one-line change each, then one results table.
# MIL max needs the pvse plugin (mil_max); set_match_prob is the match probability with the K elements
# as the samples. The smooth_chamfer run is dive_shapes itself (same seed): pass SKIP_DEFAULT=runs/...
# to reuse a finished dive_shapes run instead of training it again.
#
#     bash benchmarks/dive_ablation.sh            # four trainings (each about as long as dive_shapes)
set -euo pipefail
out=${OUT:-runs/dive_ablation}
runs=()
for sim in mil_max set_match_prob chamfer smooth_chamfer; do
  if [[ $sim == smooth_chamfer && -n ${SKIP_DEFAULT:-} ]]; then
    runs+=("$SKIP_DEFAULT"); continue
  fi
  zoo train recipes/dive_shapes.yaml --quiet --set method.similarity.type=$sim --run-dir "$out/$sim"
  runs+=("$out/$sim")
done
python benchmarks/results_table.py "${runs[@]}" --chance
