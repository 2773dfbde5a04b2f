"""What a model is, measured in the process that built it: parameters, GFLOPs, the quick
in-run latency and the zoo table of every cell. The bench stage (lightyolo/bench/) times
trained cells apart, interleaved, through deployment runtimes."""
