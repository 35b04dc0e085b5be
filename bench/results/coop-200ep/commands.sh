# CoOp with its 16-shot recipe (200 epochs) on the three testbeds, CPU, 1 thread per process (issue 4, third bar):
robustprompt bench b2n --methods coop --datasets shapes --seeds 1,2,3 --set train.epochs=200 --noise none --out runs/coop200
robustprompt bench b2n --methods coop --datasets colors --seeds 1,2,3 --set train.epochs=200 --noise none --out runs/coop200
robustprompt bench b2n --methods coop --datasets fashion-mnist --seeds 1,2,3 --set train.epochs=200 --noise none --out runs/coop200
robustprompt bench b2n --methods coop --datasets shapes --seeds 4,5,6 --set train.epochs=200 --noise none --out runs/coop200
# zero-shot, for comparison, is in bench/results/b2n-testbeds/<dataset>/zeroshot
