# The base-to-novel runs behind the README's claims tables (robustprompt-small, one seed). The command
# ran over all 11 suite datasets and was stopped at the session's end after the first four
# (emoji-animals, emoji-food, emoji-vehicles, emoji-scenes: about 11 minutes per dataset for the 6 methods on 2 CPU
# cores); rerunning it resumes, skipping what is recorded. Only config.yaml, results.json and log.txt
# of each run are kept here.
.venv/bin/robustprompt bench b2n --model robustprompt-small \
    --datasets emoji-animals,emoji-food,emoji-vehicles,emoji-scenes,emoji-faces,emoji-signs,emoji-objects,emoji-plants,emoji-actions,emoji-people,emoji-clothing \
    --methods zeroshot,coop,kgcoop,ivlp,maple,anprompt --seeds 1 --noise gaussian:0.05,typo:0.1 \
    --out runs/suite-b2n
