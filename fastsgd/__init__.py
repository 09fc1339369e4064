from ._kernels import gemm
