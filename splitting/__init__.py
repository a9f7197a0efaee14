"""Adaptive split inference (after Niu et al., 2022): early exits, partition points and feature
quantisation chosen per request by a planner, from the state of the link and the device.

Offline (torch): `train` (exit heads and bottlenecks on the frozen teacher), `export` (ONNX head_p
and tail_p, parity-checked), `accuracy` (per exit and per (p, bits)), `build` (all of it into a
bundle), `sac` and `dqn` (planners). Online and torch-free: `regime` (request period, deadline, link,
traces and server-only payload, recorded in the bundle), `inputs` (the encoded image sizes a device
holds), `actions`, `profile`, `latency`, `state`, `policy` (the trained actor in numpy), `env` (the
trace-driven environment), `baselines`, `evaluate`, `segments` (running head/tail graphs with
onnxruntime).
"""
