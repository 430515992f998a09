"""Stand-in for SimpleITK, for the peer runs on the offline GPU machine only.

The real wheel is 53 MB, more than a device call may carry beside the project and the other
wheels. torchio imports SimpleITK at module level and names its types in annotations, but the
peer runners (peers_gpu.py) build images from tensors and never call it. Every name resolves to a
class that raises on use, so a code path that does need SimpleITK fails loudly instead of
computing something else. peers_gpu.py puts this folder on sys.path only when the real SimpleITK
cannot be imported, and says so in its output.
"""

STUB = True


class _Missing:
    def __init__(self, *args, **kwargs):
        raise ImportError(f"SimpleITK.{type(self).__name__} is not available: this is the stub of benchmarks/gpu/stubs")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})
