# CPU, this project's 2-core machine, current embedded model (weights sha256 7e32c177...), 2026-11-30.
# ANPrompt at its preset (s 0.5, w_sim 10: the authors' train.py), MaPLe at its preset, and ANPrompt with
# the values this project used before (s 0.7 from MMRL, w_sim 1.0) under another label:
robustprompt bench b2n --methods anprompt --seeds 1,2,3 --out runs
robustprompt bench b2n --methods maple --seeds 1,2,3 --out runs
robustprompt bench b2n --methods anprompt --seeds 1,2,3 --set method_cfg.s=0.7 --set method_cfg.w_sim=1.0 \
    --set label=anprompt-mmrl-s --out runs-old
robustprompt report runs runs-old --table b2n --compare anprompt,maple --compare anprompt,anprompt-mmrl-s   # compare.txt
# (the anprompt runs were made with --set method_cfg.s=0.5 --set method_cfg.w_sim=10.0 on the preset of the
#  time, which is the same config as the preset now)
