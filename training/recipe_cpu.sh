#!/usr/bin/env bash
# The recipe of the committed default weights (make train): datasets, then the three models
# one after another on a 2-core CPU (about 80 minutes of training), then export and evaluation.
# Every step resumes: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

# Held-out real photographs, never used in training (evaluation and the README picture).
HELDOUT_MATE="Dune.jpg LadyBird.jpg YellowFlower.jpg Storm.jpg"
HELDOUT_IDS="skimage-chelsea skimage-coffee plasma-Autumn plasma-ColorfulCups plasma-Path plasma-Altai"
EXCLUDE=()
for f in $HELDOUT_MATE $HELDOUT_IDS; do EXCLUDE+=(--exclude "$f"); done

# Photo sources: scikit-image's bundled photographs (always there) and, when installed, Debian's
# mate-backgrounds and plasma-workspace-wallpapers packages (apt-get install them first).
SOURCES=(--source skimage)
[[ -d /usr/share/backgrounds/mate/nature ]] && SOURCES+=(--source mate)
[[ -d /usr/share/wallpapers ]] && SOURCES+=(--source plasma)

$PY -m dataset_gen --task colorize "${SOURCES[@]}" --source procedural:40 "${EXCLUDE[@]}" \
    --size 256 --crops 12 --old-photo 0.5 --val 0.06 --test 0.0 --seed 0 --out data/colorize
$PY -m dataset_gen --task sr "${SOURCES[@]}" --source procedural:10 "${EXCLUDE[@]}" \
    --size 192 --crops 16 --scales 2,4 --val 0.08 --test 0.0 --seed 0 --out data/sr
$PY -m training.heldout --out data/heldout

# Two single-threaded trainings side by side use the 2 cores better than one after the other
# with 2 threads each: colorize (55 min) beside sr_x2 then sr_x4 (25 min each).
$PY -m training.train_pix2pix --config training/configs/colorize_cpu.yaml resume=true &
col=$!
$PY -m training.train_sr --config training/configs/sr_x2_cpu.yaml resume=true
$PY -m training.train_sr --config training/configs/sr_x4_cpu.yaml resume=true
wait $col

$PY -m training.export --all --best --out weights
$PY -m training.evaluate --photos data/heldout --weights weights --out results/eval
