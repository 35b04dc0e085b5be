# How these runs were made (issue 6, re-run on the second embedded model, weights sha256 7e32c177...).
# Training, clean accuracy (3000 test images) and PGD-100 (fixed seeded 300-image subset per run): the
# robustness benchmark on one H100, one process per method x seed (the same as one command):
robustprompt bench robustness --datasets fashion-mnist --seeds 1,2,3 --eps 1/255,4/255 --pgd-steps 100 \
    --pgd-n-max 300 --aa-steps 100 --aa-n-max 50 --device cuda --out runs/gpu-rob \
    --methods zeroshot,coop,advpt,advivlp,advmaple,naptuning
# Its AutoAttack part did not finish in the device time (processes stopped at 230 s); AutoAttack at
# 1/255 on a fixed seeded 50-image subset was then run on the CPU for every run (at 4/255: not run;
# eval also re-measures and records clean accuracy, on the CPU):
robustprompt eval RUN --attack autoattack --eps 1/255 --steps 100 --n-max 50 --batch-size 50
# and the table:
robustprompt report bench/results/robustness-fashion-mnist --table robustness
# The previous model's runs (PGD-100 and AutoAttack at 1/255 and 4/255) are in git history, commit 0d00401.
