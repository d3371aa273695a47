cd /work/main
OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python -m sam_model.train --model sam_lite0 --freeze-trunk \
  --init sam_model/weights/sam_lite0.pt --out /work/runs/sam_lite0_stage3 --threads 1 \
  --time-budget-minutes 100 --lr 4e-4 --warmup 30 --min-lr-ratio 0 \
  --rounds 6 --grad-rounds 2 --reuse 2 --objects 16 --pixels-per-batch 1048576 \
  --crop-sizes 512,1024 --crop-weights 0.35,0.65 --window-prob 0.3 --large-prob 0.7 \
  --point-first-prob 0.3 --loss-size 256 --dead-leaves-prob 0.4 --randconv-prob 0.2 --seed 2 \
  --checkpoint-every 50 --log-every 25 --export /work/runs/sam_lite0_stage3/sam_lite0.pt
