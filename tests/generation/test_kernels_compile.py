"""The fused kernels compile for a Hopper GPU (sm_90), checked on the CPU.

The interpreter tests (test_fused_kernels.py) prove the kernels' arithmetic, but the interpreter accepts code
that Triton's compiler refuses (a loop-carried variable that changes shape, say), and such an error would
otherwise surface only on a GPU. Triton compiles to PTX and cubin without one, so every variant the step
launches (each layer-norm, activation and residual combination of the product; each attention
pattern, with and without key splits; with and without programmatic dependent launch) is compiled here, in a
child process: this one runs the kernels under the interpreter, which cannot compile them.
"""

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# triton itself is imported only in the child: importing it here would fix its settings before
# test_fused_kernels.py asks for the interpreter
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

# (NORM, ACTIVATION, RESIDUAL): the kinds of a layer's four products (query/key/value; output and MLP out,
# which compile alike; MLP in)
PRODUCTS = [(True, 0, False), (False, 0, True), (True, 1, False)]


def compile_all() -> list[str]:
    """Compiles every variant for sm_90; returns one line per failure."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from pipeline.generation import kernels

    failures = []

    def build(kernel, types: dict, constants: dict, pdl: bool) -> None:
        names = kernel.arg_names
        signature = {name: types.get(name, "*bf16" if name.endswith("_ptr") else "i32") for name in names}
        signature.update({name: "constexpr" for name in constants})
        source = ASTSource(fn=kernel, signature=signature,
                           constexprs={(names.index(name),): value for name, value in constants.items()})
        try:
            ptx = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"launch_pdl": pdl}).asm["ptx"]
        except Exception as exc:
            failures.append(f"{kernel.__name__} {constants}: {str(exc)[-800:]}")
            return
        if pdl != ("griddepcontrol.wait" in ptx):
            failures.append(f"{kernel.__name__} {constants}: griddepcontrol.wait {'missing' if pdl else 'present'}")

    blocks = kernels.MATMUL_BLOCKS
    for (norm, activation, residual), (pdl, norm_block) in itertools.product(PRODUCTS, [(False, 0), (True, 512)]):
        build(kernels._norm_matmul_kernel, {"eps": "fp32"},
              dict(NORM=norm, ACTIVATION=activation, RESIDUAL=residual, IEEE=False, BLOCK_M=blocks["block_m"],
                   BLOCK_N=blocks["block_n"], BLOCK_K=blocks["block_k"], NORM_BLOCK=norm_block, PDL=pdl), pdl)
    default_splits = kernels.ATTEND_BLOCKS["key_splits"]
    for pattern, (splits, pdl) in itertools.product(range(6), [(1, False), (default_splits, True)]):
        build(kernels._attend_kernel, {"scale": "fp32", "ml_ptr": "*fp32", "part_ptr": "*fp32",
                                       "counter_ptr": "*i32", "position_ptr": "*i64"},
              dict(PATTERN=pattern, BLOCK_CTX=128, PRIME_LEN=384, BLOCK_D=512,
                   BLOCK_R=kernels.ATTEND_BLOCKS["block_keys"], SPLITS=splits,
                   BLOCK_S=triton.next_power_of_2(splits), PDL=pdl), pdl)
    return failures


@pytest.mark.slow  # ~0.7 s per variant with an empty Triton cache
def test_every_kernel_variant_compiles_for_hopper():
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    code = ("import json, tests.generation.test_kernels_compile as t; "
            "print('FAILURES ' + json.dumps(t.compile_all()))")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FAILURES ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    failures = json.loads(lines[-1].removeprefix("FAILURES "))
    assert not failures, "\n".join(failures)
