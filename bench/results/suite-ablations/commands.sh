# The ablation runs of bench/ablations.yaml (the full methods' runs are the suite's: suite-b2n and
# suite-robustness). Each command is resumable; when it ends copy its runs (config.yaml, results.json,
# log.txt) to bench/results/suite-ablations/<label>/ and regenerate docs/ablations.md:
#   .venv/bin/robustprompt report --claims bench/ablations.yaml --write docs/ablations.md
SUITE=emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing
# The three ANPrompt ablations ran one after another in one process on one thread (OMP_NUM_THREADS=1), about
# 4 minutes per dataset, beside other jobs on the second core (session of 2026-12-01, 10:40-13:00).
B2N=".venv/bin/robustprompt bench b2n --model robustprompt-small --datasets $SUITE --methods anprompt --seeds 1 --noise none"
$B2N --set label=anprompt-no-noise-prompts --set method_cfg.use_noise_prompts=false --out runs/ablations/anprompt-no-noise-prompts
$B2N --set label=anprompt-no-nrvpp --set method_cfg.s=1.0 --out runs/ablations/anprompt-no-nrvpp
$B2N --set label=anprompt-no-waloss --set method_cfg.w_wa=0 --out runs/ablations/anprompt-no-waloss
# Seed 2 of the three: the same commands with --seeds 2, 2026-12-02 (07:31-09:23), up to three single-thread
# processes at once on disjoint (label, datasets), beside other jobs. no-noise-prompts ran in a process
# started before the shared text prefix (train.share_text_prefix, docs/performance.md), so every prompt
# ran in full; no-waloss and no-nrvpp ran after it, with the shared prefix.
# Seed 3 of the three: the same commands with --seeds 3, 2026-12-02 (11:25-13:47), three single-thread
# processes at once (one per label), beside a fourth job for part of the time; with the shared prefix.
# NAP-Tuning: the same budget as the suite's robustness runs (20 epochs, emoji-food, seed 1), at lr 1e-4
# [ours], the learning rate at which NAP-Tuning trains in this budget (bench/results/suite-robustness/commands.sh:
# at the code's 1e-5 it stays at zero-shot's accuracy, so removing a part of it would test nothing). The full
# method's run is suite-robustness's naptuning-lr1e-4. About 110 minutes each on one thread.
ROB=".venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --set train.epochs=20"
$ROB --methods naptuning --set train.lr=0.0001 --set label=naptuning-lr1e-4-no-refiners --set method_cfg.refine_vision=none --out runs/ablations/naptuning-lr1e-4-no-refiners
# Run 2026-12-01/02 as: the same command with --no-autoattack (training 62 minutes and PGD-100 18 minutes on one
# thread, beside two other jobs), then AutoAttack split over two processes and assembled:
#   R=runs/ablations/naptuning-lr1e-4-no-refiners/emoji-food/naptuning/seed1
#   for k in 0 1; do .venv/bin/robustprompt eval $R --attack autoattack --eps 1/255 --steps 100 --n-max 500 --shard $k/2 & done; wait
#   .venv/bin/robustprompt eval $R --attack autoattack --eps 1/255 --steps 100 --n-max 500
$ROB --methods naptuning --set train.lr=0.0001 --set label=naptuning-lr1e-4-purification --set method_cfg.w_pur=1 --out runs/ablations/naptuning-lr1e-4-purification
# Run 2026-12-02 the same way: with --no-autoattack (training 85 minutes on one thread beside two or three
# other single-thread jobs, PGD-100 about 50 minutes), and the two AutoAttack shards started while PGD ran
# (shards write only their own batch files), then assembled with the command without --shard.
$ROB --methods naptuning-v1 --out runs/ablations/naptuning-v1
# Run 2026-12-02 the same way: with --no-autoattack (training 12 minutes on one thread (PGD-2 in its preset's
# training), PGD-100 17 minutes), the two AutoAttack shards (31 minutes, beside other jobs), then assembled.
# Clean 20.4, PGD-100 14.2, AutoAttack 12.0 (500 images).
# Seed 2 of naptuning-v1 (2026-12-03, a 2-core AMD EPYC machine, nothing else running): the same command with
# --seeds 2 and --no-autoattack in one process with OMP_NUM_THREADS=2 (training 11 minutes: 12:30-12:41 UTC,
# PGD-100 8 minutes), then AutoAttack as two 1-thread shards (robustprompt eval RUN --eps 1/255 --steps 100
# --dataset emoji-food --split all --attack autoattack --n-max 500 --shard K/2; 21 minutes: 12:52-13:17),
# then the command without --no-autoattack, which found every batch and wrote the record. Clean 18.0,
# PGD-100 13.8, AutoAttack 11.6 (500 images; APGD-CE broke 20, APGD-T 11). Its config.yaml adds
# train.share_text_prefix (on; added after seed 1 ran; the same features to rounding).
# Seed 2 of no-refiners (2026-12-03): the no-refiners command run the way naptuning-v1's seed 2 was (just above).
# Training ran epochs 1-3 in one session (13:18-13:33, CI beside it for part of the time), was stopped, and
# resumed after epoch 3 from the run's checkpoint in the next, alone (14:01-14:28; "resumed after epoch 3" in
# its log.txt); PGD-100 14 minutes, the AutoAttack shards 38 minutes (14:43-15:21); the record written in 12 s.
# Clean 15.8, PGD-100 10.9, AutoAttack 11.8 (500 images; APGD-CE broke 19, APGD-T 5). Its config.yaml adds
# train.share_text_prefix, as naptuning-v1's seed 2 does.
# Seed 2 of the purification variant (2026-12-03): trained the same way (one 2-thread process, nothing else
# running: 35 minutes, 15:27-16:02 UTC; PGD-100 16 minutes); its AutoAttack shards were stopped at the end of
# that session and run in full in the next (two 1-thread shards, 16:55-17:44, nothing else running), then the
# command without --no-autoattack wrote the record. Clean 19.9, PGD-100 15.0, AutoAttack 14.2 (500 images;
# APGD-CE broke 33, APGD-T 9). Its config.yaml adds train.share_text_prefix, as the other seed-2 runs do.
# Seed 3 of naptuning-v1 (2026-12-03, the same machine; declared in bench/results/suite-robustness/commands.sh
# before it ran): the naptuning-v1 command with --seeds 3 and --no-autoattack in one 2-thread process (training
# 21:01-21:12 UTC, PGD-100 8 minutes, nothing else running but an 80-s report run), the two AutoAttack shards
# (21:21-21:37 and -21:44), then the command without --no-autoattack wrote the record. Clean 18.6, PGD-100 12.4,
# AutoAttack 10.8 (500 images; APGD-CE broke 27, APGD-T 8). The code reading vs v1 over seeds 1-3:
# +3.07 [-0.07, +6.21], not established. The no-refiners seed 3 started training after it (resumable per epoch).
