ACTIVATIONS: dict[str, int]
COSTS: dict[str, int]
OPTIMIZERS: dict[str, int]
SIMD_PATHS: dict[str, int]
LAYER_KINDS: dict[str, int]
MAX_SLOTS: int

def simd_name(path: int) -> str: ...
def dropout_keep(seed: int, step: int, row: int, unit: int, rate: float) -> bool: ...

class NonFiniteError(FloatingPointError): ...
