"""Builds the native CPU backend's kernel (azjax/zero/backends/native_kernel.cc) with the package.

The kernel is a plain shared library holding an XLA FFI handler; it needs only a C++17 compiler and the XLA
FFI headers that jaxlib ships (`jax.ffi.include_dir()`), which is why jaxlib is a build requirement. If the
build fails, the install still succeeds: azjax then runs the `select` backend and says why once at run time.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _ffi_include_dir():
    try:
        import jaxlib  # noqa: F401 - only its headers are used
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    return path if os.path.isdir(os.path.join(path, "xla", "ffi", "api")) else None


class OptionalBuildExt(build_ext):
    """Builds the kernel if it can; an install never fails because of it."""

    def build_extension(self, ext):
        include = _ffi_include_dir()
        if include is None:
            self.warn("azjax: jaxlib's XLA FFI headers not found; the native backend is not built")
            return
        ext.include_dirs.append(include)
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            self.warn(f"azjax: building the native backend failed ({e}); azjax will use the select backend")

    def get_export_symbols(self, ext):
        return []  # a plain shared library, not a Python module: no PyInit_ symbol


native = Extension(
    "azjax.zero.backends._native_kernel",
    sources=["azjax/zero/backends/native_kernel.cc", "azjax/zero/backends/fec_cache.cc",
             "azjax/zero/backends/mutation_kernel.cc"],
    depends=["azjax/zero/backends/hash128.h", "azjax/zero/backends/pool.h", "azjax/zero/backends/threefry.h"],
    language="c++",
    # -ffp-contract=off: no fused multiply-adds, so float arithmetic rounds as written (docs/backends.md).
    # -fno-wrapv undoes the -fwrapv of Python's own CFLAGS, which slows the interpreter's loops
    # (docs/backends.md, "Building the native backend").
    extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-wrapv"]
    if sys.platform != "win32" else ["/std:c++17", "/O2", "/fp:precise"],
    extra_link_args=["-lpthread"] if sys.platform != "win32" else [],
)

setup(ext_modules=[native], cmdclass={"build_ext": OptionalBuildExt})
