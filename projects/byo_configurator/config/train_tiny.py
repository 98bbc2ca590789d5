# A short run on the tiny data set: a handful of evaluations, fast on a CPU.
dataset = "tiny"
max_iters = 40
eval_interval = 10
batch_size = 128
