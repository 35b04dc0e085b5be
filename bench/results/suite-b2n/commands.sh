# The base-to-novel runs behind the README's claims tables: robustprompt-small, all 11 suite datasets,
# seed 1, and seed 2 with the same command and --seeds 2. Only config.yaml, results.json and log.txt
# of each run are kept here; rerunning a command skips what is recorded.
# Seed 1: emoji-animals, -food, -vehicles, -scenes in one session (about 11 minutes per dataset for the
# 6 methods on 2 CPU cores), the other seven in the next (108 minutes on one thread, OMP_NUM_THREADS=1,
# while other work used the second core).
# Seed 2: emoji-animals, -food, -vehicles in one session (partly on 2 threads), the rest in the next, on
# one thread per process, up to two processes at once on disjoint --datasets lists.
# The README's tables: robustprompt report --claims bench/claims.yaml --write README.md
.venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods zeroshot,coop,kgcoop,ivlp,maple,anprompt --seeds 1 --noise gaussian:0.05,typo:0.1 \
    --out runs/suite-b2n
# CoCoOp, PromptSRC and MMRL (issue 16), seed 1 (then 2, 3 with --seeds), the same protocol, one method at a time over the 11
# datasets (MMRL about 300 s per dataset on one thread beside another job, CoCoOp 90 to 1200 s by dataset size,
# 11 datasets in 83 minutes as two processes; PromptSRC 94 to 1180 s by dataset size, 11 datasets in 96 minutes
# as two processes, 2026-12-01);
# their runs land beside the six methods' here. Read by bench/claims.yaml's "methods" claims (m1-m3).
DS=emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing
for m in mmrl cocoop promptsrc; do
  OMP_NUM_THREADS=1 .venv/bin/robustprompt bench b2n --model robustprompt-small --datasets $DS --methods $m \
      --seeds 1 --noise gaussian:0.05,typo:0.1 --out runs/suite-b2n-new
done
# Seed 3 of the six methods: the same command as seed 1 with --seeds 3, one thread per process
# (OMP_NUM_THREADS=1), up to two processes at once on disjoint --datasets lists: emoji-animals, -food,
# -vehicles, -scenes on 2026-12-01 (600 to 1850 s per dataset beside other jobs), the other seven on
# 2026-12-02 (emoji-actions 8 min, -plants 6 min, -people 35 min, -clothing 30 min, -faces 36 min, -signs
# 31 min, -objects 25 min, each beside two or three other single-thread jobs on the 2 cores).
# Seed 2 of CoCoOp and MMRL and seed 3 of MMRL, 2026-12-02: the loop's command with --seeds 2 or 3, one
# thread per process, two processes on disjoint --datasets lists, nothing else running. CoCoOp seed 2: 11
# datasets in 63 minutes (5 to 18 minutes per large dataset); MMRL seed 3: 11 datasets in 27 minutes.
# PromptSRC seed 2: 11 datasets in 52 minutes (eight as two processes, the last three as three).
# Seed 3 of CoCoOp and PromptSRC, 2026-12-02: the loop's command with --seeds 3, one thread per process,
# one process per method (emoji-vehicles, -plants, -actions first; the other eight afterwards as
# two processes with short test runs beside them): CoCoOp 8 datasets in 129 minutes (15 to 18 minutes each),
# PromptSRC 8 datasets in 93 minutes (10 to 13 minutes each).
