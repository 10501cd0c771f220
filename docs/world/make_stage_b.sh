#!/bin/sh
# Writes the regime study's stage-B suites for one stage-A point (docs/world.md, section 2):
#   docs/world/make_stage_b.sh POINT LR EPOCHS RATE CLEANCLIP_LR
# POINT.cal.yaml calibrates CleanCLIP (its rule, section 4: clean fine-tuned model, reference accuracy only);
# POINT.b.yaml runs the defenses (CleanCLIP at the calibrated lr), detectors and the mean-ablation probe.
set -eu
point=$1 lr=$2 epochs=$3 rate=$4 cc_lr=${5:-}
dir=$(dirname "$0")/suites
head() {
cat <<YAML
model: {arch: tiny}
data: {kind: scene, n_pretrain: 400000}
pretrain: {epochs: 5, lr: 0.001, batch_size: 256}
finetune: {epochs: $epochs, lr: $lr, batch_size: 256, augment: false}
seeds: [0]
evaluation: {detector_samples: 300, probe_samples: 400}
resources: {torch_threads: 2}
YAML
}
{
echo "# Regime study, CleanCLIP calibration for point $point (docs/world.md, section 4): CleanCLIP at five learning"
echo "# rates on the clean fine-tuned model; the rule reads only ref_cacc (the defender's validation split)."
echo "name: $point-cal"
echo "description: CleanCLIP calibration on the clean fine-tuned model of point $point"
head
echo "pipelines:"
for l in 0.00001 0.00003 0.0001 0.0003 0.001; do
  echo "  - {defenses: [{name: cleanclip, config: {lr: $l}}], attacks: [none]}"
done
} > "$dir/$point.cal.yaml"
[ -z "$cc_lr" ] && exit 0
{
echo "# Regime study, stage B for point $point (docs/world.md, section 2); CleanCLIP at its calibrated lr $cc_lr."
echo "name: $point-b"
echo "description: regime study stage B - point $point with defenses, detectors and the mean-ablation probe"
head
echo "attacks:"
for a in badnet blended label_consistent issba badclip; do echo "  - {name: $a, config: {poison_rate: $rate}}"; done
cat <<YAML
pipelines:
  - []
  - [decomp_rep]
  - [{name: cleanclip, config: {lr: $cc_lr}}]
  - [pdb]
  - [pdb.oracle_reserve]
detectors:
  - strip
  - scale_up
  - teco
  - decomp_det
probes:
  - {name: mean_ablation, attacks: [badnet, blended]}
YAML
} > "$dir/$point.b.yaml"
