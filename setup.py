"""Build of cnnc's C core and its Cython bindings.

One extension module, cnnc._core, compiled from cnnc/_core.pyx and every .c file under src_c/.
Files under src_c/arch/<isa>/ get that ISA's compiler flags and nothing else does, so the default
objects run on any x86-64 (or other) CPU; the ISA path is picked at run time. No -march=native and
no -ffast-math. The thread pool (src_c/threads.c) needs POSIX threads; without them (or with
CNNC_NO_THREADS=1) the build says so and the library runs single-threaded.

CNNC_AVX512_EMULATION=1 makes a test build, never one to ship: the files of src_c/arch/avx512/ are
compiled for AVX2 + FMA against SIMDe's AVX-512 emulation header (pip install simde-py), and the AVX-512
path then runs, slowly, on any AVX2 machine, so its tests run where no AVX-512 CPU is at hand.
"""
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SRC = HERE / "src_c"

ISA_FLAGS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mfma"],
}
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def c_sources():
    out = []
    for path in sorted(SRC.rglob("*.c")):
        rel = path.relative_to(HERE).as_posix()
        parts = path.relative_to(SRC).parts
        if parts[0] == "arch" and parts[1] in ISA_FLAGS and not X86:
            continue  # x86 micro-kernels are not built elsewhere
        if parts[0] in ("tests", "examples"):
            continue
        out.append(rel)
    return out


def compiler_accepts(compiler, flags, code):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
            return True
        except Exception:
            return False


THREAD_PROBE = ("#include <pthread.h>\nstatic void *f(void *a){return a;}\n"
                "int main(void){pthread_t t; if (pthread_create(&t, 0, f, 0)) return 1; return pthread_join(t, 0);}\n")


class BuildExt(build_ext):
    def build_extensions(self):
        compiler = self.compiler
        is_msvc = compiler.compiler_type == "msvc"
        base = ["/O2"] if is_msvc else ["-O3", "-std=c11", "-fno-math-errno", "-Wall",
                                        "-Wno-unused-function"]
        thread_cflags, thread_ldflags = [], []
        if os.environ.get("CNNC_NO_THREADS"):
            print("cnnc: threads disabled by CNNC_NO_THREADS; the library will run single-threaded")
            thread_cflags = ["/DCNNC_NO_THREADS"] if is_msvc else ["-DCNNC_NO_THREADS"]
        elif is_msvc:
            print("cnnc: WARNING: no thread pool for this compiler (it needs POSIX threads); "
                  "cnnc will run single-threaded.")
        elif compiler_accepts(compiler, ["-pthread"], THREAD_PROBE):
            thread_cflags, thread_ldflags = ["-pthread"], ["-pthread"]
        else:
            print("cnnc: WARNING: the C compiler cannot build with POSIX threads; building without them. "
                  "cnnc will run single-threaded.")
            thread_cflags = ["-DCNNC_NO_THREADS"]
        isa_flags, emulation_cflags = dict(ISA_FLAGS), []
        if os.environ.get("CNNC_AVX512_EMULATION"):
            try:
                import simde_py
            except ImportError:
                sys.exit("cnnc: CNNC_AVX512_EMULATION needs SIMDe's headers: pip install simde-py")
            print("cnnc: AVX-512 kernels emulated on AVX2 (CNNC_AVX512_EMULATION): a test build, not for use")
            isa_flags["avx512"] = ["-mavx2", "-mfma", "-Wno-psabi", "-I" + simde_py.get_include()]
            emulation_cflags = ["-DCNNC_AVX512_EMULATED"]
        for ext in self.extensions:
            ext.extra_compile_args = base + thread_cflags + emulation_cflags
            ext.extra_link_args = thread_ldflags

        # Per-file ISA flags: wrap the compiler's single-file compile step.
        original = compiler._compile

        def compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts):
            parts = Path(src).as_posix().split("/")
            extra = list(extra_postargs)
            if "arch" in parts:
                isa = parts[parts.index("arch") + 1]
                extra += isa_flags.get(isa, [])
            return original(obj, src, ext, cc_args, extra, pp_opts)

        if not is_msvc:
            compiler._compile = compile_one
        super().build_extensions()


def cython_extension():
    from Cython.Build import cythonize
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True}
    if os.environ.get("CNNC_CYTHON_DEBUG"):
        directives.update(boundscheck=True, wraparound=True)
    ext = Extension("cnnc._core", sources=["cnnc/_core.pyx"] + c_sources(),
                    include_dirs=["src_c"], depends=[str(p.relative_to(HERE)) for p in SRC.rglob("*.h")])
    return cythonize([ext], compiler_directives=directives, quiet=True)


setup(ext_modules=cython_extension(), cmdclass={"build_ext": BuildExt})
