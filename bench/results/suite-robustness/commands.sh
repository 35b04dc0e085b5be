# Robustness runs on the emoji suite (robustprompt-small), read by bench/claims.yaml (v5, s4, s5) and
# bench/ablations.yaml. Each command is resumable (finished runs and recorded evaluations are skipped);
# only config.yaml, results.json and log.txt of each run are kept here, under runs/.
#
# Budget: 20 epochs for the three adversarially trained methods instead of the presets' 100 (AdvIVLP,
# AdvMaPLe) and 30 (NAP-Tuning); every other setting is the preset's. Zero-shot was run first, without
# the --set (it has no training). NAP-Tuning is the preset that follows the first author's code (MaPLe
# prompts, 16 tokens, depth 12, PGD-5 through the model; docs/adversarial.md), run in its own process
# beside the other two (its log: runs/suite-robustness-nap.log).
# PGD-100 on all 1000 test images of emoji-food (all 100 classes); AutoAttack (standard) on a fixed
# seeded 500-image subset, at 1/255.
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods zeroshot --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --out runs/suite-robustness
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods advivlp,advmaple,naptuning --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 \
    --set train.epochs=20 --out runs/suite-robustness
# AdvPT, the same budget, after AdvMaPLe (validity finding v5; the small model's overlay sets its context to 16)
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods advpt --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --set train.epochs=20 --out runs/suite-robustness
# NAP-Tuning at a learning rate that fits this budget [ours]: the code's AdamW lr 1e-5 is set for 30 epochs
# of 16-shot ImageNet (about 7,500 steps at batch 64); 20 epochs of emoji-food are 500 steps, after which
# the preset's clean accuracy was still zero-shot's. Everything else is the preset's. Its own --out, since
# the run directory is named after the method.
# Outcome (stopped at epoch 13 of 20, no evaluation recorded): the training loss fell from 5.20 to 4.61
# by epoch 3 and then stayed at 4.606-4.611, ln(100) = 4.605: the model collapsed to a uniform output.
# It is not evidence about NAP-Tuning, so it answers no claim. Followed up 2026-12-02 (docs/adversarial.md,
# "Where NAP-Tuning starts"; logs in bench/results/naptuning-init/): the same command with
# --set method_cfg.refine_vision=none, or with --set method_cfg.refiner_init=normal
# --set method_cfg.refiner_up_init_std=0 (refiners exactly the identity at init), each stopped after
# epoch 3, trained (loss 3.85 and 3.86 at epoch 3): the refiners' default init is the likely cause.
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods naptuning --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --set train.epochs=20 \
    --set train.lr=0.001 --set label=naptuning-lr1e-3 --out runs/suite-robustness-lr
# Then at lr 1e-4 [ours], the middle of the three rates tried (1e-5: the code's, too slow for this budget;
# 1e-3: collapsed). Only NAP-Tuning's rate was swept; the baselines ran once at their presets' rates, so
# this favours NAP-Tuning slightly. Outcome: clean 24.9 [22.3, 27.7], PGD-100 16.9 [14.7, 19.3], AutoAttack
# 13.6 [10.9, 16.9] on 500 images (APGD-CE broke 45 of the images clean-correct, APGD-T 7 more); claims s4b
# and s5b (README). About 110 minutes on one thread beside another job.
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods naptuning --seeds 1 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --set train.epochs=20 \
    --set train.lr=0.0001 --set label=naptuning-lr1e-4 --out runs/suite-robustness-lr
#
# Seed 2 (2026-12-03, a 2-core AMD EPYC machine; two single-thread jobs side by side). The same commands
# with --seeds 2: zero-shot (no --set), then AdvPT, and AdvMaPLe. AdvPT's PGD-100 and AutoAttack ran as
# two shards each (robustprompt eval RUN --eps 1/255 --steps 100 --dataset emoji-food --split all
# --attack pgd|autoattack [--n-max 500] --shard K/2, K = 0, 1), then the bench command again, which found
# every batch done and wrote the record (once the batch store's key ignored a spec's explicit dataset;
# before that fix the bench did not see the shards' batches and ran AdvPT's PGD-100 again). Timings, wall
# clock with two or three jobs on the 2 cores: zero-shot PGD-100 13 min, AutoAttack 32 min; AdvMaPLe training
# 29 min, PGD-100 13 min, AutoAttack 53 min; AdvPT training 6 min, PGD-100 10 min and AutoAttack 27 min in two
# shards.
# Seed 2 of AdvIVLP and of NAP-Tuning (lr 1e-4) were left for later sessions (AdvIVLP's seed 1 took 2h22 as
# one single-thread job beside others); both ran later, training in one process and the evaluation as shards
# (the two blocks below).
#
# NAP-Tuning (lr 1e-4) seed 2 (2026-12-03, the same 2-core AMD EPYC machine, nothing else running): the lr-1e-4
# command with --seeds 2, one process with OMP_NUM_THREADS=2 for training (40 min: 08:39-09:19 UTC), then stopped
# once the run had trained and the bench had started PGD; PGD-100 and AutoAttack as two 1-thread shards each
# (robustprompt eval RUN --eps 1/255 --steps 100 --dataset emoji-food --split all --attack pgd|autoattack
# [--n-max 500] --shard K/2; PGD-100 16 min, AutoAttack 63 min: 09:36-10:38), then the bench command again, which wrote the record (11 s). Outcome: clean 22.5%,
# PGD-100 15.8% (1000 images), AutoAttack 16.4% on its 500-image subset (APGD-CE broke 36 of the clean-correct images, APGD-T 10).
#
# AdvIVLP seed 2 (2026-12-03, the same 2-core AMD EPYC machine, nothing else running): the seed-1 command with
# --methods advivlp --seeds 2, one process with OMP_NUM_THREADS=2 (training 8 min: 11:39-11:48 UTC; PGD-100 on
# all 1000 images 8 min in that process), stopped once it had started AutoAttack; AutoAttack as two 1-thread
# shards (robustprompt eval RUN --eps 1/255 --steps 100 --dataset emoji-food --split all --attack autoattack
# --n-max 500 --shard K/2; 24 min: 12:01-12:25), then the bench command again, which wrote the record (14 s).
# Outcome: clean 17.6%, PGD-100 13.0% (1000 images), AutoAttack 12.0% on its 500-image subset (APGD-CE broke
# 22 of the clean-correct images, APGD-T 10). Its config.yaml has two fields that seed 1's lacks, both added
# after seed 1 ran: adv.box each-step (the default, what seed 1 did) and train.share_text_prefix (on: the
# text tower runs the class prompts' shared prefix once per step; tested to give the same features to
# rounding, so the two seeds differ in float rounding, not in method).
OMP_NUM_THREADS=2 .venv/bin/robustprompt bench robustness --model robustprompt-small --datasets emoji-food \
    --methods advivlp --seeds 2 --eps 1/255 --pgd-steps 100 --aa-n-max 500 --set train.epochs=20 --out runs/suite-robustness
#
# Seed 3, declared 2026-12-03 at 17:05 UTC, before any seed-3 run: every arm of the NAP-Tuning claims
# (s4b, s5b) and of the NAP ablations (bench/results/suite-ablations) gets a third seed: naptuning-lr1e-4,
# advivlp, advmaple, naptuning-lr1e-4-no-refiners, naptuning-lr1e-4-purification, naptuning-v1. Three seeds
# is the suite's standard (DATASETS.md sizes the suite for 3); with two, Student's t has one degree of
# freedom (t = 12.7) and only a gap of many points can be established. The third seeds are reported
# whatever they show and the claims are judged over every seed both arms have; no arm gets a fourth.
# Order: advivlp, naptuning-lr1e-4, advmaple, then the ablations; each with the seed-1 command and --seeds 3,
# run as seed 2 was (training and PGD-100 in one 2-thread process with --no-autoattack, AutoAttack as two
# 1-thread shards, then the command without --no-autoattack, which writes the record).
# AdvIVLP seed 3 (2026-12-03, the same 2-core AMD EPYC machine): the advivlp seed-2 command above with --seeds 3
# and --no-autoattack, one 2-thread process, nothing else running (training 8 min: 17:44-17:52 UTC; PGD-100 on
# all 1000 images 7 min), then AutoAttack as two 1-thread shards (17:59-18:31; NAP-Tuning seed 3's training
# shared the cores from 18:18), then the command without --no-autoattack, which wrote the record. Outcome:
# clean 20.3%, PGD-100 14.7%, AutoAttack 14.2% on its 500-image subset (APGD-CE broke 27, APGD-T 12).
# NAP-Tuning lr 1e-4 seed 3 (2026-12-03, the same machine): the lr-1e-4 command above (line 40) with --seeds 3
# and --no-autoattack, one 2-thread process (training 18:18-19:00 UTC, its first epochs beside AdvIVLP's last
# shard; PGD-100 on all 1000 images to 19:18, 5 min of it paused for CI), then AutoAttack as two 1-thread
# shards (19:38-20:24 and -20:30, nothing else running but short test runs during which they were paused),
# then the command without --no-autoattack, which wrote the record. Outcome: clean 22.3%, PGD-100 15.5%,
# AutoAttack 13.6% on its 500-image subset (APGD-CE broke 39, APGD-T 6).
# AdvMaPLe seed 3 (2026-12-03, the same machine): the seed-1 command above with --methods advmaple --seeds 3 and
# --no-autoattack, one 2-thread process: epochs 1-15 19:18-19:31 UTC (paused for CI in between), stopped at the
# end of that session and resumed after epoch 15 from the run's checkpoint in the next (20:28-20:30, "resumed
# after epoch 15" in its log.txt); PGD-100 on all 1000 images to 20:37; AutoAttack as two 1-thread shards
# (20:38-20:51 and -20:58, nothing else running), then the command without --no-autoattack, which wrote the
# record. Outcome: clean 18.3%, PGD-100 13.5%, AutoAttack 10.6% on its 500-image subset (APGD-CE broke 26,
# APGD-T 11).
