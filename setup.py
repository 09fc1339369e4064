"""Build the compiled core of fastsgd.

Environment switches:

FASTSGD_REQUIRE_OPENMP=1  fail the build when OpenMP does not work (CI sets it)
FASTSGD_DISABLE_OPENMP=1  build serial code on purpose
FASTSGD_NATIVE=1          add -march=native (local builds only: such a build
                          may crash with SIGILL on another CPU)
FASTSGD_DEBUG=1           -O0 -g, for debugging the C code
FASTSGD_WERROR=1          turn the C core's warnings (-Wall -Wextra) into errors (CI sets it)
FASTSGD_SANITIZE=1        build with -fsanitize=address,undefined (run with
                          LD_PRELOAD of libasan; see .ci/run)

The default build is portable: AVX2 and AVX-512 kernels are compiled with
function-level target attributes and chosen at run time.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n >= 1 ? 0 : 1;
}
"""


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _openmp_flags(compiler_cmd):
    """Compile and run a tiny OpenMP program; return (cflags, ldflags) or None."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    for cflags, ldflags in candidates:
        tmp = tempfile.mkdtemp(prefix="fastsgd-omp-")
        try:
            src = os.path.join(tmp, "probe.c")
            exe = os.path.join(tmp, "probe")
            with open(src, "w") as f:
                f.write(OMP_PROBE)
            cmd = compiler_cmd + cflags + [src, "-o", exe] + ldflags
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                continue
            r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                return cflags, ldflags
        except (OSError, subprocess.SubprocessError):
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            raise RuntimeError("fastsgd needs GCC or Clang (GNU C vector extensions)")
        cc = self.compiler.compiler_so[:1] if hasattr(self.compiler, "compiler_so") else ["cc"]
        cflags = ["-std=gnu11", "-fno-trapping-math", "-fno-math-errno"]
        ldflags = []
        if _flag("FASTSGD_DEBUG"):
            cflags += ["-O0", "-g"]
        else:
            cflags += ["-O3"]
        if _flag("FASTSGD_SANITIZE"):
            cflags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                       "-fno-omit-frame-pointer", "-g"]
            ldflags += ["-fsanitize=address,undefined"]
        if _flag("FASTSGD_NATIVE"):
            cflags.append("-march=native")
        self.fastsgd_openmp = False
        if _flag("FASTSGD_DISABLE_OPENMP"):
            warnings.warn("fastsgd: OpenMP disabled by FASTSGD_DISABLE_OPENMP; building serial kernels")
        else:
            omp = _openmp_flags(cc)
            if omp is None:
                msg = ("fastsgd: the compiler cannot build and run an OpenMP program; "
                       "building serial kernels (install libgomp/libomp for threads)")
                if _flag("FASTSGD_REQUIRE_OPENMP"):
                    raise RuntimeError(msg + " -- and FASTSGD_REQUIRE_OPENMP is set")
                warnings.warn(msg)
            else:
                cflags += omp[0]
                ldflags += omp[1]
                self.fastsgd_openmp = True
        # The C core compiles with -Wall -Wextra (and -Werror on request);
        # Cython's generated code gets the warnings it was written for.
        core_warnings = ["-Wall", "-Wextra"] + (["-Werror"] if _flag("FASTSGD_WERROR") else [])
        self._core_warnings = core_warnings
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags
            ext.extra_link_args = list(ext.extra_link_args or []) + ldflags
        super().build_extensions()

    def build_extension(self, ext):
        # csrc/*.c get the strict warnings; the generated .c files do not
        original = self.compiler._compile

        def compile_one(obj, src, ext_name, cc_args, extra_postargs, pp_opts):
            extra = list(extra_postargs)
            if os.path.sep + "csrc" + os.path.sep in os.path.abspath(src):
                extra += self._core_warnings
            return original(obj, src, ext_name, cc_args, extra, pp_opts)

        self.compiler._compile = compile_one
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = original


# The C core is linked into fastsgd._core only; the other compiled modules
# cimport its entry points, so its process-wide state exists once.
csrc = ["csrc/runtime.c", "csrc/gemm.c", "csrc/ops.c", "csrc/dense_csr.c"]
# every header: a change to any of them rebuilds the modules that include them
_here = os.path.dirname(os.path.abspath(__file__))
headers = sorted(f"csrc/{f}" for f in os.listdir(os.path.join(_here, "csrc")) if f.endswith(".h"))


def _extension(name, sources=()):
    return Extension(
        f"fastsgd.{name}",
        sources=[f"fastsgd/{name}.pyx", *sources],
        include_dirs=["csrc", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=headers + ["fastsgd/_core.pxd"],
    )


extensions = [_extension("_core", csrc), _extension("_config"), _extension("_ops"),
              _extension("_net")]

setup(
    ext_modules=cythonize(extensions, language_level=3,
                          compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
