"""Cloud server: the teacher behind an Open Inference Protocol (KServe v2) endpoint."""
