#!/usr/bin/env bash
# The recipe of the committed default weights (make train): photo packages, datasets, the
# trainings (two at a time, one thread each, on a 2-core CPU), export and evaluation.
# Every step resumes: run it again after an interruption. docs/training.md records how the
# committed weights were actually produced (runs continued from earlier weights) and what lost.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

# Real photographs from Debian packages (dataset_gen/photo_packages.txt; root needed once).
if [[ $(id -u) -eq 0 ]]; then bash scripts/install-photos.sh; fi

# Held-out photographs (dataset_gen.sources.HELDOUT) are left out of every dataset by default.
$PY -m dataset_gen --task colorize --source all-photos --source procedural:60 \
    --size 256 --crops 12 --old-photo 0.5 --val 0.05 --test 0.0 --seed 0 --out data/colorize_all
$PY -m dataset_gen --task sr --source skimage --source mate --source plasma --source lomiri --source procedural:10 \
    --size 192 --crops 24 --scales 2,4 --val 0.08 --test 0.0 --seed 0 --out data/sr
$PY -m dataset_gen --task sr --source skimage --source mate --source plasma --source lomiri --source procedural:10 \
    --size 192 --crops 24 --scales 2,4 --val 0.08 --test 0.0 --seed 0 --sr-degrade --out data/sr_real
$PY -m dataset_gen --task sr --source all-photos --source procedural:10 \
    --size 192 --crops 12 --scales 2 --val 0.08 --test 0.0 --seed 0 --out data/sr_all
$PY -m dataset_gen --task repair --source all-photos --source procedural:60 \
    --size 256 --crops 10 --clean 0.15 --val 0.05 --test 0.0 --seed 0 --out data/repair2
# The same command once the tuxtype, maldives and etr sources were added (data/repair2 above was built
# before they existed; rebuilt today the two are the same): the default's last run trained on it.
$PY -m dataset_gen --task repair --source all-photos --source procedural:60 \
    --size 256 --crops 10 --clean 0.15 --val 0.05 --test 0.0 --seed 0 --out data/repair3
$PY -m training.heldout --out data/heldout

# Colouriser (classification over ab bins) beside SR ×2 (previous default ×2 recipe, then a
# long continuation), then ×4 from the ×2 body.
$PY -m training.train_colorizer --config training/configs/colorize_cls_cpu.yaml resume=true &
col=$!
$PY -m training.train_sr --config training/configs/sr_x2_cpu.yaml resume=true
$PY -m training.train_sr --config training/configs/sr_x2_long_cpu.yaml resume=true
$PY -m training.train_sr --config training/configs/sr_x4_cpu.yaml init=runs/sr_x2_long/model out=runs/sr_x4 steps=1700 minutes=24 resume=true
$PY -m training.train_sr --config training/configs/sr_x4_long_cpu.yaml resume=true
$PY -m training.train_sr --config training/configs/sr_x4_long_cpu.yaml init=runs/sr_x4_long/model out=runs/sr_x4_long2 \
    lr=0.00005 steps=2500 minutes=22 threads=2 resume=true
# The default ×2: PAN, the equal-time comparison's run (15 min) continued (sr_x2_pan_cpu.yaml).
$PY -m training.train_sr data=data/sr_all out=runs/arch_pan scale=2 model_type=PAN "arch={nf: 32, unf: 24, nb: 8}" \
    steps=20000 minutes=15 lr=0.0005 warmup=100 eval_every=500 eval_images=48 threads=1 resume=true
$PY -m training.train_sr --config training/configs/sr_x2_pan_cpu.yaml resume=true
# The default ×4: PAN with its body from the PAN ×2 and a narrower upsampler (unf 12), 2 threads.
$PY -m training.export --sr runs/pan_x2 --best --out runs/export_pan_x2
$PY -m training.train_sr data=data/sr out=runs/pan_x4_u12 scale=4 model_type=PAN "arch={nf: 32, unf: 12, nb: 8}" \
    init=runs/export_pan_x2/sr_x2 patch=32 batch_size=16 lr=0.0005 warmup=50 steps=3000 minutes=18 \
    eval_every=500 eval_images=48 threads=2 resume=true
# ... and the ×2 trained on with a fresh cosine over 11 000 steps (2 threads): the served ×2.
$PY -m training.train_sr --config training/configs/sr_x2_pan_long_cpu.yaml resume=true
# The ×2 for compressed inputs (X-SR-Input: compressed): the same 15-minute PAN run with JPEG drawn
# afresh per LR patch, then with the mild real-photo degradations (JPEG, blur, noise in random order).
# (The EDSR variants served before it: sr_x2_jpeg_cpu, sr_x2_jpeg_deep_cpu, sr_x2_jpeg_all_cpu; docs/training.md.)
$PY -m training.train_sr data=data/sr_all out=runs/pan_x2_jpeg scale=2 model_type=PAN "arch={nf: 32, unf: 24, nb: 8}" \
    init=runs/arch_pan/model "jpeg=[50, 95]" jpeg_p=0.85 val_jpeg=75 lr=0.0005 warmup=50 steps=3000 stop_at=1750 \
    eval_every=500 eval_images=48 threads=1 resume=true
$PY -m training.train_sr --config training/configs/sr_x2_real_pan_cpu.yaml resume=true
# ... flat on validation from step 2500: grown by two SCPA blocks (added as the identity) and trained on
$PY -m training.export --sr runs/pan_x2_real --out runs/export_compressed
$PY -m training.train_sr --config training/configs/sr_x2_real_pan10_cpu.yaml resume=true
wait $col
# Repair (luminance residual with a whole-photo context, no tone curve); its gate is chosen on
# validation at the end of the run and written into runs/repair/model/config.json.
$PY -m training.train_repair --config training/configs/repair_cpu.yaml resume=true
# ... then trained on with the damage drawn afresh every batch (online: the served weights)
$PY -m training.train_repair --config training/configs/repair_online_cpu.yaml init=runs/repair/model resume=true
# ... grown by the histogram-aware tone curve (stopped at 8750 as the recorded run), then with the
# curve's own loss; the validation-best model (step 3000) is served, its gate chosen on validation.
$PY -m training.train_repair --config training/configs/repair_tone_cpu.yaml init=runs/repair_online/model stop_at=8750 resume=true
$PY -m training.train_repair --config training/configs/repair_tone2_cpu.yaml resume=true
# ... its step-3000 model trained on with a gentler mix (more clean photos, some single damages);
# the model at step 5000 is served, behind the two-band gate chosen on validation.
$PY -m training.train_repair --config training/configs/repair_gentle_cpu.yaml resume=true
# ... its step-5000 model (behind its gate) trained on with the per-crop log-MSE loss.
$PY -m training.export_repair --model runs/repair_gentle/model_5000 --data data/repair2 --out runs/export_repair_gentle
$PY -m training.train_repair --config training/configs/repair_logmse_cpu.yaml init=runs/export_repair_gentle resume=true
# ... its step-5000 model (behind its gate) trained on the same way on data/repair3 (the photographic
# ground textures among its photos) with 35 % of the photos left clean; the model at step 6000 is
# served, its gate chosen on validation.
$PY -m training.export_repair --model runs/repair_logmse/model_5000 --data data/repair2 --out runs/export_repair_logmse
$PY -m training.train_repair --config training/configs/repair_tex2_cpu.yaml init=runs/export_repair_logmse resume=true

# Colouriser: the classification run's step-2000 model (the validation-best), trained on for 1000
# steps with Tux Paint's photographed objects pasted on its crops.
$PY -m training.export_chroma --run runs/colorize_cls --step 2000 --data data/colorize_all --out runs/export_colorize_cls
# The default: objects pasted on the plain-grey and the aged crops (stamp_aged), seed 1, its
# validation-best kept model (docs/training.md: colorize_aged_all).
$PY -m training.train_colorizer --config training/configs/colorize_aged_all_cpu.yaml init=runs/export_colorize_cls resume=true
$PY -m training.export_chroma --run runs/colorize_aged_all --step 500 --data data/colorize_all --out weights/colorize
$PY -m training.export --sr runs/pan_x2_long --out weights  # its last model (step 11 000)
$PY -m training.export --sr runs/pan_x4_u12 --out weights  # ×4: PAN with a narrow upsampler (below)
$PY -m training.export --sr runs/pan_x2_real10 --out runs/export_compressed10
mkdir -p weights/sr_x2/compressed
cp runs/export_compressed10/sr_x2/{config.json,export.json,model_2x.safetensors} weights/sr_x2/compressed/
rm -rf weights/repair && $PY -m training.export_repair --model runs/repair_tex2/model_6000 --data data/repair3 --out weights/repair
$PY -m training.evaluate --photos data/heldout --weights weights --out results/eval
