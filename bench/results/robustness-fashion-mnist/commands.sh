# How these runs were made (issue 6). Training: the robustness benchmark on one H100,
# one process per method x seed (the same as one command):
robustprompt bench robustness --datasets fashion-mnist --seeds 1,2,3 --device cuda --out runs/gpu-rob-train1 \
    --methods zeroshot,coop,advpt,advivlp,advmaple,naptuning
# Its evaluation did not finish in the device time; every run was then evaluated on the CPU, per run:
robustprompt eval RUN --attack pgd --eps 1/255,4/255 --steps 100 --n-max 300 --batch-size 300
robustprompt eval RUN --attack autoattack --eps 1/255,4/255 --steps 100 --n-max 50 --batch-size 50
# and the table:
robustprompt report bench/results/robustness-fashion-mnist --table robustness
