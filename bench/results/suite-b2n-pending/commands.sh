# Runs made so far toward the next steps of the suite evidence, NOT yet in bench/claims.yaml's runs
# (the README's claims stay on one seed over all eleven datasets until a seed is complete):
#   seed 2 of the six methods (emoji-animals, emoji-food, emoji-vehicles complete; stopped at the
#   session's end inside emoji-scenes),
#   PromptSRC and MMRL at seed 1 (emoji-animals complete).
# Both ran at the same time on one thread each (OMP_NUM_THREADS=1); the rest of food and all of vehicles
# of seed 2 then ran alone on 2 threads (vehicles: about 9 minutes). Only config.yaml, results.json and
# log.txt are kept; b2n-pending.md tabulates them alone, b2n-emoji-animals.md beside seed 1 of emoji-animals:
#   robustprompt report bench/results/suite-b2n-pending/runs --table b2n --no-plots
#   robustprompt report bench/results/suite-b2n-pending/runs/emoji-animals bench/results/suite-b2n/runs/emoji-animals --table b2n --no-plots
# To continue: rerun each command (it retrains what is not in --out), then copy the finished runs here
# or, for a complete seed, into bench/results/suite-b2n/runs.
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods zeroshot,coop,kgcoop,ivlp,maple,anprompt --seeds 2 --noise gaussian:0.05,typo:0.1 --out runs/suite-b2n
OMP_NUM_THREADS=1 .venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods promptsrc,mmrl --seeds 1 --noise gaussian:0.05,typo:0.1 --out runs/suite-b2n-new
