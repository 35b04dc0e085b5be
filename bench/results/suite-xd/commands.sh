# Cross-dataset transfer from the many-class source (validity finding v6, bench/claims.yaml): CoOp at its
# preset (batch 32, 50 epochs) and MaPLe at its code's cross-dataset recipe (maple-xd: batch 4, 2 epochs,
# depth 3), 16 shots of all 1227 emoji-world classes, tested clean on the eleven suite datasets.
# NOT RUN YET. Each training step encodes all 1227 class prompts. Measured 2026-12-02 on one thread of
# the 2-core machine, beside two other jobs, before the shared prefix: CoOp 6.4 s per step (30,700 steps,
# about 55 hours per seed), maple-xd 3.0 s (9,816 steps, about 8 hours). The shared prefix measured 3.8x
# for CoOp and 1.5x for MaPLe at 1000 classes, which leaves about 14 and 5 hours. So this is a GPU job.
# Runs land in runs/suite-xd/emoji-world/<method>/seed<S>; copy their config.yaml, results.json and
# log.txt to bench/results/suite-xd/runs/ and regenerate the README.
SUITE=emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing
.venv/bin/robustprompt bench xd --model robustprompt-small --datasets emoji-world --targets $SUITE \
    --methods coop,maple-xd --seeds 1,2,3 --out runs/suite-xd --device cuda
# A lent GPU gives 15 minutes of device time and 10 per command, so run the six trainings side by side
# (the model is small: one process leaves an H200 mostly idle), each in its own --out (two processes
# must never share a label and dataset), then copy every run into runs/suite-xd. Every command resumes
# from its last finished epoch, so an interrupted set is restarted with the same line on the same machine
# (a fresh device machine starts bare: carry runs/suite-xd-* to resume there). Not timed yet.
#   for m in coop maple-xd; do for s in 1 2 3; do
#     .venv/bin/robustprompt bench xd --model robustprompt-small --datasets emoji-world --targets $SUITE \
#         --methods $m --seeds $s --out runs/suite-xd-$m-$s --device cuda > xd-$m-$s.log 2>&1 &
#   done; done; wait
