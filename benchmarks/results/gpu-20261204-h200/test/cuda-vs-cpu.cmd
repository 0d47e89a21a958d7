python benchmarks/cuda_vs_cpu.py --size 1280x720 --frames 4 --batch 2 --repeat 3
