# The base-to-novel runs behind the README's claims tables (robustprompt-small, one seed, all 11 suite
# datasets). The first four (emoji-animals, emoji-food, emoji-vehicles, emoji-scenes) ran in one session,
# about 11 minutes per dataset for the 6 methods on 2 CPU cores; the command was stopped there and
# resumed in the next session for the other seven (108 minutes on one thread, OMP_NUM_THREADS=1, other
# work on the second core); rerunning it skips what is recorded. Only config.yaml, results.json and
# log.txt of each run are kept here. The README's tables: robustprompt report --claims bench/claims.yaml --write README.md
.venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods zeroshot,coop,kgcoop,ivlp,maple,anprompt --seeds 1 --noise gaussian:0.05,typo:0.1 \
    --out runs/suite-b2n
