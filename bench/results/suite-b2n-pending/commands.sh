# Runs made toward the next steps of the suite evidence, NOT in bench/claims.yaml's runs: PromptSRC and
# MMRL at seed 1 (emoji-animals complete). Seed 2 of the six methods, kept here before, is now in
# bench/results/suite-b2n/runs. On one thread (OMP_NUM_THREADS=1) beside another job, PromptSRC took
# about 1000 s per dataset and MMRL about 300 s. Only config.yaml, results.json and log.txt are kept;
# b2n-emoji-animals.md tabulates them beside seeds 1-2 of the six methods on emoji-animals:
#   robustprompt report bench/results/suite-b2n-pending/runs/emoji-animals bench/results/suite-b2n/runs/emoji-animals --table b2n --no-plots
# To continue: rerun the command (it trains what is not in --out), then copy the finished runs here.
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods promptsrc,mmrl --seeds 1 --noise gaussian:0.05,typo:0.1 --out runs/suite-b2n-new
