vdeblur bench --json --device cuda --size 1280x720 --frames 48 --repeats 20 --warmup 3 --e2e-repeats 3 --precision fp16,bf16 --stages model,end_to_end
