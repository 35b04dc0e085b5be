cd /work/main
export OMP_NUM_THREADS=1 ROBUSTPROMPT_FASHION_MNIST=/usr/share/datasets/fashion-mnist
rp=.venv/bin/robustprompt
v() { name=$1; shift; $rp bench b2n --methods anprompt --datasets fashion-mnist,shapes,colors --seeds 1,2,3 --noise blur:1 "$@" --out runs/abl/$name > runs/abl/$name.log 2>&1; }
v base
v first1 --set method_cfg.first_layer=1
v learn-tpl --set method_cfg.learn_template=true
v no-wa --set method_cfg.w_wa=0
v s1 --set method_cfg.s=1.0
v no-sim --set method_cfg.w_sim=0
echo ALLDONE > runs/abl/done2
